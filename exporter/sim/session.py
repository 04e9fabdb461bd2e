"""One WebSocket client's protocol state, Sans-I/O: subscriptions in, frames out.

The socket shell feeds each received text to `Session.receive` and each model event to
`Session.frame`; both return plain data (messages to send, a close to perform).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from exporter.sim.model import Broadcast, MempoolModel
from exporter.sim.txmath import PROJECTED_BLOCKS, Projection, prices

MAX_CLIENT_MESSAGES = 100
CLIENT_MESSAGE_WINDOW = 10.0
MAX_TRACKED_TXS = 100
WANT_VALUES = frozenset({"blocks", "mempool-blocks", "live-2h-chart", "stats", "tomahawk"})

Frame = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Close:
    """Close the connection with this code and reason."""

    code: int
    reason: str


@dataclass
class Received:
    """What one client text led to: the parsed message (if any), replies, and maybe a close."""

    message: dict[str, Any] | None = None
    replies: list[Frame] = field(default_factory=list)
    close: Close | None = None


def encode(message: Mapping[str, Any]) -> Frame:
    """A message as frame parts (one per top-level key)."""
    return [(k, orjson.dumps(v)) for k, v in message.items()]


def txids_delta(delta: Mapping[str, Any]) -> dict[str, Any]:
    """The ``mempool-txids`` form of a ``mempool-transactions`` delta."""
    return {
        "sequence": delta["sequence"],
        "added": [t["txid"] for t in delta["added"]],
        "removed": delta["removed"],
        "mined": delta["mined"],
        "replaced": [{"replaced": r["replaced"], "by": r["by"]["txid"]} for r in delta["replaced"]],
    }


@dataclass(eq=False)
class Session:
    """Subscriptions of one connection (they do not survive a reconnect)."""

    wants: set[str] = field(default_factory=set)
    track_mempool: bool = False
    track_txids: bool = False
    block_index: int | None = None
    block_list: dict[str, list[Any]] = field(default_factory=dict)
    message_times: deque[float] = field(default_factory=deque)

    def receive(self, raw: str | bytes, model: MempoolModel, now: float, tick: float) -> Received:
        """Apply one client text: rate limit, parse, then act on the message.

        ``now`` is the wall clock (for message contents), ``tick`` a monotonic clock (for the
        message-rate window).
        """
        times = self.message_times
        times.append(tick)
        while times and times[0] < tick - CLIENT_MESSAGE_WINDOW:
            times.popleft()
        if len(times) > MAX_CLIENT_MESSAGES:
            return Received(close=Close(1008, "too many messages"))
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return Received(close=Close(1008, "invalid JSON"))
        if not isinstance(message, dict):
            return Received()
        result = Received(message)
        self._apply(message, model, now, result)
        return result

    def _apply(
        self, message: Mapping[str, Any], model: MempoolModel, now: float, out: Received
    ) -> None:
        action = message.get("action")
        if action == "ping":
            out.replies.append(encode({"pong": True}))
        elif action == "want" and isinstance(message.get("data"), list):
            wanted = {str(v) for v in message["data"]} & WANT_VALUES
            fresh = wanted - self.wants
            self.wants = wanted
            reply: dict[str, Any] = {}
            projection = model.projection()
            if "blocks" in fresh:
                reply["blocks"] = model.chain.last()
            if "stats" in fresh:
                reply.update(model.stats(projection, now))
            if "mempool-blocks" in fresh:
                reply["mempool-blocks"] = projection.blocks
            if reply:
                out.replies.append(encode(reply))
        elif action == "init":
            projection = model.projection()
            blob = {
                **model.stats(projection, now),
                "blocks": model.chain.last(),
                "mempool-blocks": projection.blocks,
                "conversions": prices(model.usd, now, up=model.prices_up),
            }
            out.replies.append(encode(blob))
        if "track-mempool" in message:
            self.track_mempool = message["track-mempool"] is True
        if "track-mempool-txids" in message:
            self.track_txids = message["track-mempool-txids"] is True
        if "track-mempool-block" in message:
            index = message["track-mempool-block"]
            if isinstance(index, int) and 0 <= index < PROJECTED_BLOCKS:
                self.block_index = index
                self.block_list = {}
                update = self._block_update(model.projection(), model.sequence, full=True)
                if update is not None:
                    out.replies.append(encode({"projected-block-transactions": update}))
            elif index == -1:
                self.block_index = None
                self.block_list = {}
        tracked = message.get("track-txs")
        if isinstance(tracked, list) and len(tracked) > MAX_TRACKED_TXS:
            out.close = Close(1008, "too many txids")

    def frame(self, event: Broadcast) -> Frame:
        """The parts of ``event`` this client subscribed to (empty: send nothing)."""
        frame: Frame = []
        delta = event.delta
        if event.block is not None and "blocks" in self.wants:
            block = event.block
            frame.append(("block", event.part("block", lambda: block)))
        if event.blocks is not None and "blocks" in self.wants:
            blocks = event.blocks
            frame.append(("blocks", event.part("blocks", lambda: blocks)))
        if delta is not None and self.track_mempool:
            frame.append(("mempool-transactions", event.part("mt", lambda: delta)))
        if delta is not None and self.track_txids:
            frame.append(("mempool-txids", event.part("mtx", lambda: txids_delta(delta))))
        projection = event.projection
        if projection is not None and "mempool-blocks" in self.wants:
            frame.append(("mempool-blocks", event.part("mb", lambda: projection.blocks)))
        if event.stats is not None and "stats" in self.wants:
            frame.extend(event.stats_parts())
        if projection is not None and delta is not None and self.block_index is not None:
            update = self._block_update(projection, int(delta["sequence"]), full=event.full_lists)
            if update is not None:
                frame.append(("projected-block-transactions", orjson.dumps(update)))
        return frame

    def _block_update(
        self, projection: Projection, sequence: int, *, full: bool
    ) -> dict[str, Any] | None:
        index = self.block_index
        assert index is not None
        entries: Sequence[list[Any]] = (
            projection.lists[index] if index < len(projection.lists) else []
        )
        current = {str(e[0]): e for e in entries}
        previous, self.block_list = self.block_list, current
        if full:
            return {"index": index, "sequence": sequence, "blockTransactions": list(entries)}
        added = [e for txid, e in current.items() if txid not in previous]
        removed = [txid for txid in previous if txid not in current]
        changed = [
            [txid, e[4], e[5], False]
            for txid, e in current.items()
            if txid in previous and (previous[txid][4], previous[txid][5]) != (e[4], e[5])
        ]
        if not (added or removed or changed):
            return None
        return {
            "index": index,
            "sequence": sequence,
            "delta": {"added": added, "removed": removed, "changed": changed},
        }
