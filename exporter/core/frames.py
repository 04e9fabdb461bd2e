"""Decoding of mempool.space WebSocket frames, and the messages a client sends.

A frame is one JSON object whose keys are message types; one frame may carry several. Unknown
keys are counted as `other` and ignored. Transactions inside `added` stay raw dicts here: most
are not whales, and detection looks at them once, cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

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


def encode(message: dict[str, Any]) -> str:
    return orjson.dumps(message).decode()


@dataclass(slots=True)
class MempoolDelta:
    """One `mempool-transactions` message."""

    sequence: int | None
    added: list[Any] = field(default_factory=list)  # raw; detection validates each
    removed: list[str] = field(default_factory=list)
    mined: list[str] = field(default_factory=list)
    replaced: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass(slots=True)
class Frame:
    """Everything one frame said that the exporter uses."""

    types: list[str] = field(default_factory=list)
    delta: MempoolDelta | None = None
    block: dict[str, Any] | None = None
    blocks: list[dict[str, Any]] | None = None
    mempool_blocks: list[dict[str, Any]] | None = None
    fees: dict[str, Any] | None = None
    mempool_info: dict[str, Any] | None = None
    prices: dict[str, Any] | None = None


def decode_frame(raw: bytes | str) -> Frame:
    """Parse one frame; raises DecodeError when the frame as a whole is unusable."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DecodeError(f"frame is a JSON {type(data).__name__}, not an object")
    frame = Frame(types=[MESSAGE_TYPES.get(key, "other") for key in data])
    if (delta := data.get("mempool-transactions")) is not None:
        frame.delta = _delta(delta)
    frame.block = _optional(data, "block", dict)
    frame.blocks = _optional(data, "blocks", list)
    frame.mempool_blocks = _optional(data, "mempool-blocks", list)
    frame.fees = _optional(data, "fees", dict)
    frame.mempool_info = _optional(data, "mempoolInfo", dict)
    frame.prices = _optional(data, "conversions", dict)
    return frame


def _optional(data: dict[str, Any], key: str, kind: type) -> Any:
    value = data.get(key)
    if value is not None and not isinstance(value, kind):
        raise DecodeError(f"{key} is not a JSON {kind.__name__}")
    return value


def _delta(value: Any) -> MempoolDelta:
    if not isinstance(value, dict):
        raise DecodeError("mempool-transactions is not an object")
    sequence = value.get("sequence")
    if sequence is not None and (not isinstance(sequence, int) or isinstance(sequence, bool)):
        raise DecodeError("mempool-transactions.sequence is not an integer")
    delta = MempoolDelta(sequence)
    delta.added = _list(value, "added")
    delta.removed = [txid for txid in _list(value, "removed") if isinstance(txid, str)]
    delta.mined = [txid for txid in _list(value, "mined") if isinstance(txid, str)]
    for pair in _list(value, "replaced"):
        if isinstance(pair, dict) and isinstance(pair.get("replaced"), str):
            by = pair.get("by")
            if isinstance(by, dict):
                delta.replaced.append((pair["replaced"], by))
    return delta


def _list(value: dict[str, Any], key: str) -> list[Any]:
    items = value.get(key) or []
    if not isinstance(items, list):
        raise DecodeError(f"mempool-transactions.{key} is not a list")
    return items


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
