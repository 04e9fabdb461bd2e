"""The block audit: every new block is checked for whales the mempool watch never saw.

For each new block (and, after a reorg, each replacing block) one request,
`/api/v1/block/:hash/summary`, lists every transaction with its gross value. Each one whose
gross value reaches the whale floor and that the tracker never followed is fetched in full and
detected; a whale found so is recorded confirmed at that height, `seen_in_mempool: false`,
with no prediction, and notified once. `whale_confirmed_total{seen}` counts both kinds, so
recall is one PromQL ratio.

Blocks in the first `blocks` list after start-up were mined before the exporter watched and
are not audited; blocks mined during a later outage are. A failed audit is retried with the
periodic outcome checks, a few times.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from exporter.core.detect import detect
from exporter.core.errors import DecodeError
from exporter.core.models import Event, EventKind, Scoring, Signal, Status, Urgency
from exporter.core.tracker import Step
from exporter.errors import ExporterError, NotFound
from exporter.logs import Throttled

if TYPE_CHECKING:
    from exporter.pipeline import Pipeline

log = logging.getLogger(__name__)
throttled = Throttled(log)
REMEMBER = 500  # block hashes audited or seen
MAX_QUEUED = 64
ATTEMPTS = 5


@dataclass(slots=True)
class _Block:
    block_hash: str
    height: int
    at: float | None
    attempts: int = 0


class BlockAudit:
    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        self._seen: OrderedDict[str, int] = OrderedDict()  # hash -> height
        self._top: int | None = None
        self._queue: OrderedDict[str, _Block] = OrderedDict()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    # --- which blocks ----------------------------------------------------------------------

    def saw_blocks(self, blocks: Iterable[Mapping[str, Any]], *, new: bool) -> None:
        """`block` messages (`new`) are audited; a `blocks` list only where it shows blocks
        mined since the last one seen, or another hash at a known height (a reorg)."""
        if not self.p.settings.audit:
            return
        top, heights = self._top, set(self._seen.values())  # as before this message
        for block in blocks:
            height, block_hash, at = block.get("height"), block.get("id"), block.get("timestamp")
            if not isinstance(height, int) or not isinstance(block_hash, str):
                continue
            if block.get("stale") or block_hash in self._seen:
                continue
            audit = new or (top is not None and (height > top or height in heights))
            self._seen[block_hash] = height
            while len(self._seen) > REMEMBER:
                self._seen.popitem(last=False)
            self._top = max(height, self._top or height)
            if audit and len(self._queue) < MAX_QUEUED:
                when = float(at) if isinstance(at, int | float) else None
                self._queue[block_hash] = _Block(block_hash, height, when)
                self._wake.set()

    # --- the audit -----------------------------------------------------------------------------

    async def loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.drain()
            except Exception:  # a bug here must not stop the exporter: retried at the next tick
                log.exception("block audit failed")

    async def drain(self) -> None:
        """Audit every queued block once; failed ones stay queued for `retry`."""
        async with self._lock:  # the loop and the periodic retry never audit side by side
            for block in list(self._queue.values()):
                await self._audit(block)

    async def retry(self) -> None:
        """Called with the periodic outcome checks: audit again what failed."""
        if self._queue:
            await self.drain()

    async def _audit(self, block: _Block) -> None:
        m = self.p.metrics
        block.attempts += 1
        try:
            found = await self.audit(block)
        except (ExporterError, ValueError) as exc:
            m.audit_blocks.labels("error").inc()
            if block.attempts >= ATTEMPTS:
                self._queue.pop(block.block_hash, None)
                log.warning("audit of block %d abandoned: %s", block.height, exc)
            else:
                throttled.warning(
                    "audit", "audit of block %d failed (retried): %s", block.height, exc
                )
            return
        self._queue.pop(block.block_hash, None)
        m.audit_blocks.labels("ok").inc()
        if found:
            log.info(
                "audit: block %d held %d whales never seen in the mempool", block.height, found
            )

    async def audit(self, block: _Block) -> int:
        """Check one block; returns the whales found. Raises when the summary cannot be read
        or a candidate cannot be fetched (whales found before that are kept)."""
        p = self.p
        summary = await p.rest.block_summary(block.block_hash)
        floor = p.floor_sats()
        candidates = sorted(
            (
                entry
                for entry in summary[1:]  # the first is the coinbase
                if isinstance(entry.get("txid"), str)
                and isinstance(entry.get("value"), int | float)
                and entry["value"] >= floor
                and not p.tracker.is_known(entry["txid"])
            ),
            key=lambda entry: -entry["value"],
        )
        found = 0
        for entry in candidates:
            try:
                tx = await p.rest.tx(entry["txid"])
            except NotFound:
                continue  # reorged out meanwhile
            signal = self._whale(tx, block, floor)
            if signal is not None and not p.tracker.is_known(signal.txid):
                p.tracker.remember_resolved([signal])
                await p.publish(Step(events=[Event(EventKind.DETECTED, signal.snapshot())]))
                found += 1
        return found

    def _whale(self, tx: dict[str, Any], block: _Block, floor: int) -> Signal | None:
        p = self.p
        try:
            detection = detect(tx, p.tracker.book)
        except DecodeError as exc:
            throttled.warning("audit-tx", "audit: skipped a malformed transaction: %s", exc)
            return None
        if detection.value_sats < floor:
            return None
        price = p.picture.price_usd
        scoring = Scoring(
            urgency_score=0.0,
            urgency_level=Urgency.LOW,
            urgency_fallback=True,
            predicted_blocks=None,  # nothing was predicted: it tests no prediction
            tip_height=None,
            value_usd=detection.value_btc * price if price else None,
        )
        now = p.clock()
        signal = Signal.new(detection, scoring, now)
        signal.status = Status.CONFIRMED
        signal.block_height, signal.block_hash = block.height, block.block_hash
        signal.resolved_at = block.at or now
        signal.seen_in_mempool = False
        return signal
