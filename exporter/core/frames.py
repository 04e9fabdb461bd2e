"""Decoding of mempool.space WebSocket frames, and the messages a client sends.

A frame is one JSON object whose keys are message types; one frame may carry several. Each
message is decoded on its own, and each transaction inside one: what is malformed or carries
a number out of its sane range (`limits.py`) is skipped and listed in `Frame.errors`, and
everything valid in the same frame is still used. Only a frame that is not a JSON object at
all raises. Unknown keys are counted as `other` and ignored.

Transactions inside `added` are checked here only for the shape every one of them is read
with (txid, inputs' outpoints); most are not whales, and detection checks the rest (values,
fees, sizes) of the few that may be.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from exporter.core import limits
from exporter.core.errors import DecodeError

WANT = {"action": "want", "data": ["blocks", "stats", "mempool-blocks"]}
TRACK_MEMPOOL = {"track-mempool": True}
PING = {"action": "ping"}
SUBSCRIPTIONS = (WANT, TRACK_MEMPOOL)

# message key -> metric `type` label
MESSAGE_TYPES = {
    "mempool-transactions": "mempool_transactions",
    "block": "block",
    "blocks": "blocks",
    "mempool-blocks": "mempool_blocks",
    "mempoolInfo": "stats",
    "vBytesPerSecond": "stats",
    "transactions": "stats",
    "fees": "fees",
    "pong": "pong",
    "projected-block-transactions": "projected_block",
}
FEE_KEYS = ("fastestFee", "halfHourFee", "hourFee", "economyFee", "minimumFee")
MAX_SEQUENCE = 2**53


def encode(message: dict[str, Any]) -> str:
    return orjson.dumps(message).decode()


@dataclass(slots=True)
class MempoolDelta:
    """One `mempool-transactions` message."""

    sequence: int | None
    added: list[Any] = field(default_factory=list)  # shape-checked dicts; detection does the rest
    removed: list[str] = field(default_factory=list)
    mined: list[str] = field(default_factory=list)
    replaced: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass(slots=True)
class Frame:
    """Everything one frame said that the exporter uses, and what it had to skip."""

    types: list[str] = field(default_factory=list)
    delta: MempoolDelta | None = None
    block: dict[str, Any] | None = None
    blocks: list[dict[str, Any]] | None = None
    mempool_blocks: list[dict[str, Any]] | None = None
    fees: dict[str, Any] | None = None
    mempool_info: dict[str, Any] | None = None
    prices: dict[str, Any] | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)  # (kind, reason)

    def skip(self, kind: str, reason: str) -> None:
        self.errors.append((kind, reason))


def decode_frame(raw: bytes | str) -> Frame:
    """Parse one frame; raises DecodeError only when the frame as a whole is unusable."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:  # valid JSON that orjson refuses (1e400): the checks below reject the number alone
            data = json.loads(raw)
        except ValueError:
            raise DecodeError(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DecodeError(f"frame is a JSON {type(data).__name__}, not an object")
    frame = Frame(types=[MESSAGE_TYPES.get(key, "other") for key in data])
    for key, decode in _MESSAGES.items():
        value = data.get(key)
        if value is not None:
            try:
                decode(frame, value)
            except DecodeError as exc:
                frame.skip("message", f"{key}: {exc}")
    return frame


def _delta(frame: Frame, value: Any) -> None:
    if not isinstance(value, dict):
        raise DecodeError("not an object")
    sequence = value.get("sequence")
    if sequence is not None:
        try:
            sequence = limits.integer(sequence, 0, MAX_SEQUENCE, "sequence")
        except DecodeError as exc:  # the transactions are still good
            frame.skip("message", f"mempool-transactions: {exc}")
            sequence = None
    delta = MempoolDelta(sequence)
    frame.delta = delta
    for tx in _list(frame, value, "added"):
        if (reason := tx_shape(tx)) is None:
            delta.added.append(tx)
        else:
            frame.skip("transaction", reason)
    delta.removed = _txids(frame, value, "removed")
    delta.mined = _txids(frame, value, "mined")
    for pair in _list(frame, value, "replaced"):
        if (reason := _pair_problem(pair)) is None:
            delta.replaced.append((pair["replaced"], pair["by"]))
        else:
            frame.skip("transaction", reason)


def _pair_problem(pair: Any) -> str | None:
    if not isinstance(pair, dict):
        return "a replaced entry is not an object"
    old = pair.get("replaced")
    if type(old) is not str or not limits.TXID.fullmatch(old):
        return "a replaced entry has no valid txid"
    return tx_shape(pair.get("by"))


def _list(frame: Frame, value: dict[str, Any], key: str) -> list[Any]:
    items = value.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        frame.skip("message", f"mempool-transactions.{key} is not a list")
        return []
    return items


def _txids(frame: Frame, value: dict[str, Any], key: str) -> list[str]:
    good = [txid for txid in _list(frame, value, key) if type(txid) is str]
    items = value.get(key)
    if isinstance(items, list) and len(good) != len(items):
        frame.skip("transaction", f"mempool-transactions.{key} holds a non-string txid")
    return good


def tx_shape(tx: Any) -> str | None:
    """Why `tx` cannot be read as a transaction at all, or None when its shape is fine.

    Checks what is read of every transaction: the txid, and each input's outpoint (types only:
    every transaction passes here, so it is kept to a few type checks). Values, fees, sizes and
    the txid's hex digits are checked by detection, for the few that may be whales.
    """
    if type(tx) is not dict:
        return "transaction is not an object"
    txid = tx.get("txid")
    if type(txid) is not str or len(txid) != 64:
        return "transaction has no valid txid"
    vin = tx.get("vin")
    if type(vin) is not list:
        return f"{txid}: vin is not a list"
    for item in vin:
        if (
            type(item) is not dict
            or type(item.get("txid")) is not str
            or (type(item.get("vout")) is not int)
        ):
            return f"{txid}: an input has no outpoint"
    if type(tx.get("vout")) is not list:
        return f"{txid}: vout is not a list"
    return None


def well_formed(txs: list[Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The transactions of `txs` that `tx_shape` accepts, and why each other one was not.

    For transactions that come from elsewhere than a frame (REST), before they meet the tracker.
    """
    good, bad = [], []
    for tx in txs:
        if (reason := tx_shape(tx)) is None:
            good.append(tx)
        else:
            bad.append(reason)
    return good, bad


def well_formed_blocks(items: list[Any]) -> list[dict[str, Any]]:
    """The blocks of `items` that a `blocks` message would keep, for blocks read over REST."""
    good = []
    for item in items:
        try:
            good.append(_block(item))
        except DecodeError:
            continue
    return good


def summary_values(entries: list[Any]) -> list[tuple[str, int]]:
    """(txid, gross value in sats) of each well-formed entry of a block summary
    (`/api/v1/block/:hash/summary`), the coinbase (the first entry) left out. An entry with a
    txid that is not one, or a value no transaction can hold, is skipped: its txid never
    becomes a REST path."""
    good = []
    for entry in entries[1:]:
        if not isinstance(entry, dict):
            continue
        try:
            good.append((limits.txid(entry.get("txid")), limits.sats(entry.get("value"), "value")))
        except DecodeError:
            continue
    return good


def _block(item: Any) -> dict[str, Any]:
    """A `block` (or one entry of `blocks`) with a valid id, height and time, or DecodeError."""
    if not isinstance(item, dict):
        raise DecodeError("block is not an object")
    limits.txid(item.get("id"), "block id")
    limits.height(item.get("height"), "block height")
    if item.get("timestamp") is not None:
        limits.timestamp(item["timestamp"], "block timestamp")
    previous = item.get("previousblockhash")
    if previous is not None:
        limits.txid(previous, "previousblockhash")
    return item


def _one_block(frame: Frame, value: Any) -> None:
    frame.block = _block(value)


def _blocks(frame: Frame, value: Any) -> None:
    if not isinstance(value, list):
        raise DecodeError("not a list")
    frame.blocks = []
    for item in value:
        try:
            frame.blocks.append(_block(item))
        except DecodeError as exc:
            frame.skip("message", f"blocks: {exc}")


def _mempool_blocks(frame: Frame, value: Any) -> None:
    """Projected blocks: one bad entry would skew every share, so the message goes whole."""
    if not isinstance(value, list):
        raise DecodeError("not a list")
    for item in value:
        if not isinstance(item, dict):
            raise DecodeError("projected block is not an object")
        limits.number(item.get("blockVSize"), 0, limits.MAX_MEMPOOL_VSIZE, "blockVSize")
        limits.optional_number(item, "blockSize", 0, limits.MAX_MEMPOOL_VSIZE * 4)
        limits.optional_number(item, "nTx", 0, limits.MAX_MEMPOOL_COUNT)
        limits.optional_number(item, "totalFees", 0, limits.MAX_SATS)
        limits.optional_number(item, "medianFee", 0, limits.MAX_FEE_RATE)
        rates = item.get("feeRange")
        if rates is not None:
            if not isinstance(rates, list) or len(rates) > 1_000:
                raise DecodeError("feeRange is not a list of rates")
            for rate in rates:
                limits.fee_rate(rate, "feeRange rate")
    frame.mempool_blocks = value


def _fees(frame: Frame, value: Any) -> None:
    if not isinstance(value, dict):
        raise DecodeError("not an object")
    for key in FEE_KEYS:
        limits.fee_rate(value.get(key), key)
    frame.fees = value


def _mempool_info(frame: Frame, value: Any) -> None:
    if not isinstance(value, dict):
        raise DecodeError("not an object")
    limits.integer(value.get("size"), 0, limits.MAX_MEMPOOL_COUNT, "size")
    limits.number(value.get("bytes"), 0, limits.MAX_MEMPOOL_VSIZE, "bytes")
    frame.mempool_info = value


def _prices(frame: Frame, value: Any) -> None:
    if not isinstance(value, dict):
        raise DecodeError("not an object")
    usd = value.get("USD")
    if usd is not None:
        # mempool sends -1 (or 0) when it knows no price: that is "unknown", not an error.
        limits.number(usd, -1, limits.MAX_PRICE, "USD")
    frame.prices = value


_MESSAGES: dict[str, Callable[[Frame, Any], None]] = {
    "mempool-transactions": _delta,
    "block": _one_block,
    "blocks": _blocks,
    "mempool-blocks": _mempool_blocks,
    "fees": _fees,
    "mempoolInfo": _mempool_info,
    "conversions": _prices,
}


class SequenceWatch:
    """Follows `mempool-transactions.sequence` on one connection.

    The first number after a (re)connect is the baseline. The same number again means the
    backend is out of sync (not a loss); a jump means lost messages; a drop means a restart.
    """

    def __init__(self) -> None:
        self.last: int | None = None

    def reset(self) -> None:
        self.last = None

    def observe(self, sequence: int | None) -> str:
        """Returns "ok", "first", "stalled", "gap" or "reset"."""
        if sequence is None:
            return "ok"
        last, self.last = self.last, sequence
        if last is None:
            return "first"
        if sequence == last:
            return "stalled"
        if sequence == last + 1:
            return "ok"
        return "gap" if sequence > last else "reset"
