"""The block audit: every new block is checked for whales the mempool watch never saw.

For each new block (and, after a reorg, each replacing block) one request,
`/api/v1/block/:hash/summary`, lists every transaction with its gross value. Each one whose
gross value reaches the whale floor and that the tracker never followed is fetched in full and
detected; a whale found so is recorded confirmed at that height, `seen_in_mempool: false`,
with no prediction, and notified once. `whale_confirmed_total{seen}` counts both kinds, so
recall is one PromQL ratio.

Blocks mined while the exporter was away are audited too. The last block seen is persisted
(with the known chain), so after a restart or an outage every block above it is audited: those
in the first `blocks` list (the last 8), and the ones below that list, found by height with
`/api/v1/blocks/:height` (15 per request), at most `CATCH_UP` of them; older ones are counted as
skipped. On the very first start there is no last block: that list is the baseline. A failed
audit is retried with the periodic outcome checks, a few times.
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
from exporter.core.frames import summary_values, well_formed_blocks
from exporter.core.models import Event, EventKind, Scoring, Signal, Status, Urgency
from exporter.core.tracker import Step
from exporter.errors import ExporterError, NotFound
from exporter.logs import Throttled

if TYPE_CHECKING:
    from exporter.pipeline import Pipeline

log = logging.getLogger(__name__)
throttled = Throttled(log)
REMEMBER = 500  # block hashes audited or seen
CATCH_UP = 144  # blocks (a day) audited below the first `blocks` list after a long absence
MAX_QUEUED = CATCH_UP + 64
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
        self._missing: tuple[int, int] | None = None  # heights to find by REST, both included
        self._missing_attempts = 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    # --- which blocks ----------------------------------------------------------------------

    def resume(self, blocks: Iterable[tuple[int, str]]) -> None:
        """Start from the blocks an earlier run saw (persisted), so the ones since are audited."""
        for height, block_hash in blocks:
            self._remember(block_hash, height)

    def saw_blocks(self, blocks: Iterable[Mapping[str, Any]], *, new: bool) -> None:
        """`block` messages (`new`) are audited; a `blocks` list only where it shows blocks
        mined since the last one seen, or another hash at a known height (a reorg). The
        blocks are decoded ones (`core.frames`): a valid id and height, maybe a time."""
        if not self.p.settings.audit:
            return
        top, heights = self._top, set(self._seen.values())  # as before this message
        lowest: int | None = None
        for block in blocks:
            height, block_hash = block["height"], block["id"]
            if block.get("stale") or block_hash in self._seen:
                continue
            audit = new or (top is not None and (height > top or height in heights))
            self._remember(block_hash, height)
            if audit:
                self._enqueue(block_hash, height, block.get("timestamp"))
                lowest = height if lowest is None else min(lowest, height)
        if top is not None and lowest is not None and lowest > top + 1:
            self._gap(top + 1, lowest - 1)

    def _remember(self, block_hash: str, height: int) -> None:
        self._seen[block_hash] = height
        while len(self._seen) > REMEMBER:
            self._seen.popitem(last=False)
        self._top = max(height, self._top or height)

    def _enqueue(self, block_hash: str, height: int, at: Any) -> None:
        if len(self._queue) >= MAX_QUEUED:  # failing audits fill it: the REST side is down
            self.p.metrics.audit_blocks.labels("skipped").inc()
            return
        when = float(at) if isinstance(at, int | float) else None
        self._queue[block_hash] = _Block(block_hash, height, when)
        self._wake.set()

    def _gap(self, low: int, high: int) -> None:
        """Heights mined while away and below the list just seen: found by REST in `drain`."""
        if self._missing is not None:
            low = min(low, self._missing[0])
        if high - low + 1 > CATCH_UP:
            skipped = high - CATCH_UP + 1 - low
            self.p.metrics.audit_blocks.labels("skipped").inc(skipped)
            log.warning(
                "audit: %d blocks were mined while away; the last %d are audited, %d skipped",
                high - low + 1, CATCH_UP, skipped,
            )  # fmt: skip
            low = high - CATCH_UP + 1
        self._missing = (low, high)
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
            await self._find_missing()
            for block in list(self._queue.values()):
                await self._audit(block)

    async def retry(self) -> None:
        """Called with the periodic outcome checks: audit again what failed."""
        if self._queue or self._missing:
            await self.drain()

    async def _find_missing(self) -> None:
        """Queue the blocks of the missing heights, highest first; kept to retry on failure."""
        while self._missing is not None:
            low, high = self._missing
            try:
                blocks = well_formed_blocks(await self.p.rest.blocks_at(high))
            except (ExporterError, ValueError) as exc:
                self._missing_attempts += 1
                if self._missing_attempts >= ATTEMPTS:
                    self.p.metrics.audit_blocks.labels("skipped").inc(high - low + 1)
                    log.warning("audit: blocks %d-%d abandoned: %s", low, high, exc)
                    self._missing, self._missing_attempts = None, 0
                else:
                    throttled.warning("audit-gap", "audit: finding block %d failed: %s", high, exc)
                return
            self._missing_attempts = 0
            for block in blocks:
                height, block_hash = block["height"], block["id"]
                if low <= height <= high and block_hash not in self._seen:
                    self._remember(block_hash, height)
                    self._enqueue(block_hash, height, block.get("timestamp"))
            below = min((block["height"] for block in blocks), default=low)
            self._missing = (low, below - 1) if low < below <= high else None

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
                (txid, value)
                for txid, value in summary_values(summary)
                if value >= floor and not p.tracker.is_known(txid)
            ),
            key=lambda entry: -entry[1],
        )
        found = 0
        for txid, _ in candidates:
            try:
                tx = await p.rest.tx(txid)
            except NotFound:
                continue  # reorged out meanwhile
            if p.tracker.replaces_pending(tx):
                continue  # replaced a whale while away: that chain's REST check follows it
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
