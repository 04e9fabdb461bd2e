"""The simulated backend's REST answers as data: a path in, a `Reply` out (no sockets).

Routes follow shared/MEMPOOL_PROTOCOL.md. The public site (the default) serves the mempool
backend under ``/api/v1/`` and esplora under ``/api/``; a bare backend (``bare=True``) serves
everything under ``/api/v1/`` only. `answer_electrs` is a self-hosted electrs's own REST port:
esplora routes without the ``/api`` prefix, plus its ``/internal/...`` bulk routes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from exporter.sim.chain import unseen_tx
from exporter.sim.model import MempoolModel
from exporter.sim.txmath import (
    esplora_form,
    fee_histogram,
    prices,
    recommended_fees,
    socket_fees,
    tx_rate,
)


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, body and content type (plus extra headers)."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def text(status: int, body: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    """A plain-text reply."""
    return Reply(status, body.encode(), "text/plain; charset=utf-8", headers)


def json(value: Any) -> Reply:
    """A 200 JSON reply."""
    return Reply(200, orjson.dumps(value))


NOT_FOUND = text(404, "Not Found")
MAX_PAGE_TXIDS = 10_000
MAX_PAGE_TXS = 1_000
MAX_POSTED_TXIDS = 10_000


def answer(
    model: MempoolModel,
    path: str,
    query: Mapping[str, list[str]],
    now: float,
    *,
    bare: bool = False,
) -> Reply:
    """Answer a GET under ``/api``, as the public site or (``bare``) as a bare backend."""
    segments = [s for s in path.split("/") if s]
    if segments[:1] != ["api"]:
        return NOT_FOUND
    rest = segments[1:]
    if rest[:1] == ["v1"]:
        return _backend(model, rest[1:], now, bare=bare) or NOT_FOUND
    if bare:
        return NOT_FOUND
    return _esplora(model, rest, query) or NOT_FOUND


def answer_electrs(
    model: MempoolModel, method: str, path: str, query: Mapping[str, list[str]], body: bytes
) -> Reply:
    """Answer a request on a self-hosted electrs's REST port (no ``/api`` prefix)."""
    segments = [s for s in path.split("/") if s]
    if segments[:3] == ["internal", "mempool", "txs"] and len(segments) <= 4:
        if method == "POST" and len(segments) == 3:
            return _posted_txs(model, body)
        if method == "GET":
            limit = _int(query, "max_txs", MAX_PAGE_TXS)
            if limit is None:
                return text(400, "Invalid max_txs")
            last = segments[3] if len(segments) == 4 else None
            return json(model.esplora_page(last, max(1, min(limit, MAX_PAGE_TXS))))
    if method != "GET":
        return text(405, "Method Not Allowed")
    if segments[:2] == ["internal", "block"] and segments[3:] == ["txs"] and len(segments) == 4:
        entry = model.chain.by_hash.get(segments[2])
        if entry is None:
            return text(404, "Block not found")
        confirmed = model.chain.confirmed
        txs = [confirmed.get(t) or unseen_tx(t, entry.block) for t in entry.txids]
        return json([esplora_form(tx) for tx in txs])
    return _esplora(model, segments, query) or NOT_FOUND


def _posted_txs(model: MempoolModel, body: bytes) -> Reply:
    """``POST /internal/mempool/txs``: txids in, the full txs still in the mempool out."""
    try:
        txids = orjson.loads(body)
    except orjson.JSONDecodeError:
        return text(400, "Invalid JSON")
    if not isinstance(txids, list) or not all(isinstance(t, str) for t in txids):
        return text(400, "Expected a JSON array of txids")
    if len(txids) > MAX_POSTED_TXIDS:
        return text(400, f"At most {MAX_POSTED_TXIDS} txids")
    found = (model.lookup(t) for t in txids if model.in_mempool(t))
    return json([esplora_form(tx) for tx in found if tx is not None])


def _int(query: Mapping[str, list[str]], name: str, default: int) -> int | None:
    values = query.get(name)
    if not values:
        return default
    try:
        return int(values[0])
    except ValueError:
        return None


def _backend(model: MempoolModel, rest: Sequence[str], now: float, *, bare: bool) -> Reply | None:
    """The mempool backend's own routes (``/api/v1/...``)."""
    if rest == ["fees", "recommended"]:
        if not model.in_sync:
            return text(503, "Service Unavailable")
        fees = recommended_fees(model.projection().blocks, 1.0)
        return json({k: math.ceil(v - 1e-9) for k, v in fees.items()})
    if rest == ["fees", "precise"]:
        return json(socket_fees(model.projection()))
    if rest == ["fees", "mempool-blocks"]:
        return json(model.projection().blocks)
    if rest == ["prices"]:
        if not model.prices_up:
            return text(503, "Service Unavailable")
        return json(prices(model.usd, now))
    if rest == ["blocks"]:
        return json(list(reversed(model.chain.last(15))))
    if rest[:1] == ["blocks"] and len(rest) == 2 and rest[1].isdigit():
        return json(model.chain.below(int(rest[1]), 15))
    if rest == ["mempool", "txids"]:
        return json(model.all_txids())
    if rest[:1] == ["tx"] and rest[2:] == ["rbf"]:
        return json(rbf_tree(model, rest[1]))
    if rest[:1] == ["block"] and len(rest) in (2, 3):
        return _block(model, rest[1], rest[2:], extras=True)
    if not bare:  # the public site's esplora serves these under /api/ only
        return None
    if rest[:1] == ["tx"] and len(rest) in (2, 3):
        return _tx(model, rest[1], rest[2:], extras=True)
    if rest[:2] == ["blocks", "tip"] and len(rest) == 3:
        return _tip(model, rest[2])
    return None


def _esplora(
    model: MempoolModel, rest: Sequence[str], query: Mapping[str, list[str]]
) -> Reply | None:
    """Esplora's routes as the public site serves them (``/api/...``)."""
    if rest == ["mempool"]:
        count, vsize, fees = model.totals()
        histogram = fee_histogram(model.txs.values())
        return json({"count": count, "vsize": vsize, "total_fee": fees, "fee_histogram": histogram})
    if rest == ["mempool", "txids"]:
        return json(model.all_txids())
    if rest[:3] == ["mempool", "txids", "page"] and len(rest) <= 4:
        limit = _int(query, "max_txs", MAX_PAGE_TXIDS)
        if limit is None:
            return text(400, "Invalid max_txs")
        last = rest[3] if len(rest) == 4 else None
        return json(model.txids_after(last, max(1, min(limit, MAX_PAGE_TXIDS))))
    if rest == ["mempool", "recent"]:
        return json(list(reversed(model.recent)))
    if rest[:2] == ["blocks", "tip"] and len(rest) == 3:
        return _tip(model, rest[2])
    if rest[:1] == ["tx"] and len(rest) in (2, 3):
        return _tx(model, rest[1], rest[2:], extras=False)
    if rest[:1] == ["block"] and len(rest) in (2, 3):
        return _block(model, rest[1], rest[2:], extras=False)
    return None


def _tip(model: MempoolModel, what: str) -> Reply | None:
    tip = model.chain.tip
    if what == "height":
        return text(200, str(tip["height"]))
    if what == "hash":
        return text(200, str(tip["id"]))
    return None


def _tx(model: MempoolModel, txid: str, tail: Sequence[str], *, extras: bool) -> Reply:
    if tail == ["status"]:
        if model.in_mempool(txid):
            return json({"confirmed": False})
        status = model.chain.status(txid)
        return json(status) if status else text(404, "Transaction not found")
    tx = model.lookup(txid)
    if tail or tx is None:
        return text(404, "Transaction not found")
    return json(tx if extras else esplora_form(tx))


def _block(model: MempoolModel, block_hash: str, tail: Sequence[str], *, extras: bool) -> Reply:
    entry = model.chain.by_hash.get(block_hash)
    if entry is None:
        return text(404, "Block not found")
    if tail == ["txids"]:
        return json(entry.txids)
    if tail == ["summary"] and extras:
        return json(entry.summary())
    if not tail:
        block = entry.block
        return json(block if extras else {k: v for k, v in block.items() if k != "extras"})
    return NOT_FOUND


def rbf_tree(model: MempoolModel, txid: str) -> dict[str, Any]:
    """``/api/v1/tx/:txid/rbf``: the replacement tree from the newest replacement down."""
    replaced_by = model.replaced_by
    tip = txid
    while tip in replaced_by:
        tip = replaced_by[tip]
    replaces = [old for old, new in replaced_by.items() if new == txid]

    def tree(node: str) -> dict[str, Any]:
        children = [old for old, new in replaced_by.items() if new == node]
        body = model.lookup(node) or {}
        return {
            "tx": {"txid": node, "fee": body.get("fee"), "vsize": body.get("vsize"),
                   "rate": round(tx_rate(body), 2) if body else None,
                   "rbf": True, "fullRbf": False, "mined": node in model.chain.tx_block},
            "time": body.get("firstSeen"), "fullRbf": False,
            "replaces": [tree(child) for child in children],
        }  # fmt: skip

    return {
        "replacements": tree(tip) if tip != txid or replaces else None,
        "replaces": replaces or None,
    }
