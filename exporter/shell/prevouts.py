"""Instances without prevouts: fetch a candidate in full before calling it a whale.

A bitcoind- or electrum-backed mempool sends `"prevout": null` on every input, so the frame
cannot tell change from payment: 10 BTC paid out of a 300 BTC input would look like a 299.9 BTC
whale, and an exchange's outflow would look like `unknown`. A transaction whose gross value
reaches the floor is held back from the frame and fetched over REST (`/api/v1/tx/:txid`
fills prevouts); if that fails it is recorded by gross value, `value_is_gross: true`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from exporter.core.detect import gross_sats
from exporter.core.errors import DecodeError
from exporter.core.frames import MempoolDelta, tx_shape
from exporter.core.models import EventKind, TxStatus
from exporter.errors import ExporterError
from exporter.logs import Throttled

if TYPE_CHECKING:
    from exporter.pipeline import Pipeline

log = logging.getLogger(__name__)
throttled = Throttled(log)
MAX_IN_FLIGHT = 64


def lacks_prevouts(tx: Any) -> bool:
    """Whether a transaction's first input comes without its prevout (instance-wide trait)."""
    try:
        first = tx["vin"][0]
        return first.get("prevout") is None and not first.get("is_coinbase")
    except (TypeError, KeyError, IndexError, AttributeError):
        return False


class PrevoutFill:
    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        self._tasks: set[asyncio.Task[None]] = set()

    def hold_back(self, delta: MempoolDelta, floor: int) -> list[dict[str, Any]]:
        """Take out of `delta.added` the prevout-less candidates; the caller passes them to
        `start` once the frame is published."""
        if not delta.added or not lacks_prevouts(delta.added[0]):
            return []
        replacing = {by.get("txid") for _, by in delta.replaced}
        keep, held = [], []
        for tx in delta.added:
            if lacks_prevouts(tx) and tx.get("txid") not in replacing:
                try:
                    gross = gross_sats(tx)
                except DecodeError:
                    gross = -1  # detection reports it
                if gross >= floor and not self.p.tracker.is_known(tx.get("txid", "")):
                    held.append(tx)
                    continue
            keep.append(tx)
        delta.added = keep
        return held

    def start(self, held: list[dict[str, Any]], received_at: float | None) -> None:
        for tx in held:
            if len(self._tasks) >= MAX_IN_FLIGHT:  # REST cannot keep up: take the gross value
                task = asyncio.create_task(self._examine(tx, None, received_at))
            else:
                task = asyncio.create_task(self._fill(tx, received_at))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _fill(self, tx: dict[str, Any], received_at: float | None) -> None:
        try:
            full: dict[str, Any] | None = await self.p.rest.tx(tx["txid"])
        except (ExporterError, ValueError) as exc:
            throttled.warning("prevouts", "prevout fetch failed; using the gross value: %s", exc)
            full = None
        if full is not None and (tx_shape(full) is not None or lacks_prevouts(full)
                                 or full.get("txid") != tx["txid"]):  # fmt: skip
            full = None
        if full is not None:  # the frame's mempool extras (fee rates, position), REST's inputs
            full = {**tx, "vin": full["vin"], "status": full.get("status")}
        await self._examine(tx, full, received_at)

    async def _examine(
        self, frame_tx: dict[str, Any], full: dict[str, Any] | None, received_at: float | None
    ) -> None:
        p = self.p
        now = p.clock()
        tx = full if full is not None else frame_tx
        out = p.tracker.on_delta(MempoolDelta(None, added=[tx]), now, p.picture)
        status = tx.get("status")
        if isinstance(status, dict) and status.get("confirmed") is True:  # mined meanwhile
            height, block_hash = status.get("block_height"), status.get("block_hash")
            confirmed = TxStatus(
                found=True,
                confirmed=True,
                block_height=height if isinstance(height, int) else None,
                block_hash=block_hash if isinstance(block_hash, str) else None,
            )
            out.merge(p.tracker.on_status(tx["txid"], confirmed, now))
        await p.publish(out, received_at)
        if full is None and any(e.kind is EventKind.DETECTED for e in out.events):
            p.metrics.gross_fallbacks.inc()  # after the save: the whale is readable once counted

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
