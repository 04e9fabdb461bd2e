"""The simulated backend's REST answers as data: a path in, a `Reply` out (no sockets).

Routes follow shared/MEMPOOL_PROTOCOL.md. The public site serves the mempool backend under
``/api/v1/`` and esplora under ``/api/``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from exporter.sim.model import MempoolModel
from exporter.sim.txmath import (
    ESPLORA_KEYS,
    fee_histogram,
    prices,
    recommended_fees,
    socket_fees,
    tx_rate,
    tx_vsize,
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


def answer(model: MempoolModel, path: str, query: Mapping[str, list[str]], now: float) -> Reply:
    """Answer a GET under ``/api``."""
    segments = [s for s in path.split("/") if s]
    if segments[:1] != ["api"]:
        return NOT_FOUND
    rest = segments[1:]
    if rest[:1] == ["v1"]:
        return _backend(model, rest[1:], now) or NOT_FOUND
    return _esplora(model, rest, query) or NOT_FOUND


def _backend(model: MempoolModel, rest: Sequence[str], now: float) -> Reply | None:
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
    if rest == ["mempool", "txids"]:
        return json(list(model.txs))
    if rest[:1] == ["tx"] and rest[2:] == ["rbf"]:
        return json(rbf_tree(model, rest[1]))
    if rest[:1] == ["tx"] and len(rest) in (2, 3):
        return _tx(model, rest[1], rest[2:], extras=True)
    if rest[:1] == ["block"] and len(rest) in (2, 3):
        return _block(model, rest[1], rest[2:], extras=True)
    return None


def _esplora(
    model: MempoolModel, rest: Sequence[str], query: Mapping[str, list[str]]
) -> Reply | None:
    """Esplora's routes as the public site serves them (``/api/...``)."""
    if rest == ["mempool"]:
        txs = model.txs.values()
        return json(
            {
                "count": len(model.txs),
                "vsize": sum(tx_vsize(t) for t in txs),
                "total_fee": sum(int(t["fee"]) for t in txs),
                "fee_histogram": fee_histogram(txs),
            }
        )
    if rest == ["mempool", "txids"]:
        return json(list(model.txs))
    if rest[:3] == ["mempool", "txids", "page"] and len(rest) <= 4:
        ordered = sorted(model.txs)
        if len(rest) == 4:
            ordered = [t for t in ordered if t > rest[3]]
        limit = int(query.get("max_txs", ["10000"])[0])
        return json(ordered[: max(1, min(limit, 10_000))])
    if rest == ["mempool", "recent"]:
        return json(list(reversed(model.recent)))
    if rest[:2] == ["blocks", "tip"] and len(rest) == 3:
        tip = model.chain.tip
        if rest[2] == "height":
            return text(200, str(tip["height"]))
        if rest[2] == "hash":
            return text(200, str(tip["id"]))
    if rest[:1] == ["tx"] and len(rest) in (2, 3):
        return _tx(model, rest[1], rest[2:], extras=False)
    if rest[:1] == ["block"] and len(rest) in (2, 3):
        return _block(model, rest[1], rest[2:], extras=False)
    return None


def _tx(model: MempoolModel, txid: str, tail: Sequence[str], *, extras: bool) -> Reply:
    if tail == ["status"]:
        if txid in model.txs:
            return json({"confirmed": False})
        status = model.chain.status(txid)
        return json(status) if status else text(404, "Transaction not found")
    tx = model.lookup(txid)
    if tail or tx is None:
        return text(404, "Transaction not found")
    if extras:
        return json(tx)
    return json({k: tx[k] for k in ESPLORA_KEYS if k in tx})


def _block(model: MempoolModel, block_hash: str, tail: Sequence[str], *, extras: bool) -> Reply:
    entry = model.chain.by_hash.get(block_hash)
    if entry is None:
        return text(404, "Block not found")
    if tail == ["txids"]:
        return json(entry.txids)
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
