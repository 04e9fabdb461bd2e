"""The shell around the pure core: frames in; store, metrics and notifications out.

    stream -> decode -> detect/track -> score -> (store, metrics, notify)
    blocks -> outcomes -> accuracy

All tracker state is touched on the event loop only. Each frame's events are saved in one
batch and then published; detection latency runs from frame receipt to that point.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from exporter.config import Settings
from exporter.core.accuracy import WINDOWS, Accuracy
from exporter.core.addresses import AddressBook
from exporter.core.fees import (
    FeePicture,
    price_expired,
    update_picture,
    with_price,
    with_rest_blocks,
    with_rest_fees,
    with_tip,
)
from exporter.core.frames import MempoolDelta, SequenceWatch, decode_frame
from exporter.core.known import KnownTxids
from exporter.core.models import Event, EventKind
from exporter.core.recall import Recall
from exporter.core.tracker import Step, Tracker
from exporter.errors import DecodeError, ExporterError, StoreUnavailable
from exporter.logs import Throttled
from exporter.metrics import Metrics
from exporter.shell.audit import BlockAudit
from exporter.shell.esplora import Esplora
from exporter.shell.prevouts import PrevoutFill
from exporter.shell.rest import MempoolRest
from exporter.shell.resync import Resync
from exporter.shell.store import Store

log = logging.getLogger(__name__)
throttled = Throttled(log)
FEE_MAX_AGE = 120.0  # seconds before the stream's fee picture counts as stale
PRICE_MAX_AGE = 900.0


class Notifies(Protocol):
    def submit(self, event: Event) -> None: ...


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        store: Store,
        rest: MempoolRest,
        book: AddressBook,
        *,
        notifier: Notifies | None = None,
        clock: Callable[[], float] = time.time,
        queue_size: int = 256,
        esplora: Esplora | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.store = store
        self.rest = rest
        self.notifier = notifier
        self.clock = clock
        self.tracker = Tracker(
            book,
            settings.threshold_sats,
            threshold_usd=settings.threshold_usd,
            drop_grace=settings.drop_grace,
            max_pending_days=settings.max_pending_days,
            fee_max_age=FEE_MAX_AGE,
        )
        self.accuracy = Accuracy()
        self.recall = Recall()
        self.picture = FeePicture()
        self.sequence = SequenceWatch()
        self.queue: asyncio.Queue[tuple[str | bytes, float]] = asyncio.Queue(queue_size)
        self.resync = asyncio.Event()  # set when a backfill and reconciliation are due
        self.generation = 0  # stream connections so far
        self.stream_up: Callable[[], bool] = lambda: True  # the app wires the stream's state
        self.known = KnownTxids()  # txids known to be in the mempool
        self.resyncer = Resync(self, esplora)
        self.audit = BlockAudit(self)
        self.prevouts = PrevoutFill(self)
        self._checking: set[str] = set()  # txids whose REST status is being asked
        self._unsaved_blocks: list[tuple[int, str]] | None = None

    # --- start-up ----------------------------------------------------------------------------

    async def restore(self) -> None:
        """Reload pending whales and rebuild the accuracy windows from the store."""
        now = self.clock()
        pending = await self.store.load_pending()
        self.tracker.restore(pending)
        blocks = await self.store.load_blocks()
        self.tracker.chain.restore(blocks)
        self.audit.resume(blocks)
        resolved = await self.store.load_since(now - max(WINDOWS.values()))
        self.tracker.remember_resolved(resolved)
        self.recall.remember_counted(resolved)
        for signal in resolved:
            self.accuracy.record(signal.chain_id, signal.resolved_at or now, signal.hit)
        self._refresh_gauges(now)
        log.info("restored %d pending whales, %d recent outcomes", len(pending), len(resolved))

    # --- frames ------------------------------------------------------------------------------

    async def on_frame(self, raw: str | bytes, received_at: float) -> None:
        """Called by the stream for every frame; waits when the queue is full (backpressure)."""
        await self.queue.put((raw, received_at))
        self.metrics.frame_queue.set(self.queue.qsize())

    async def on_connected(self) -> None:
        self.sequence.reset()
        self.generation += 1
        self.resync.set()

    async def consume(self) -> None:
        while True:
            raw, received_at = await self.queue.get()
            self.metrics.frame_queue.set(self.queue.qsize())
            try:
                await self.process(raw, received_at)
            except Exception:  # a frame must never stop the pipeline
                self.metrics.decode_errors.labels("frame").inc()
                log.exception("failed to process a frame; skipped")
            finally:
                self.queue.task_done()

    async def process(self, raw: str | bytes, received_at: float) -> None:
        self.metrics.last_message.set(received_at)
        try:
            frame = decode_frame(raw)
        except DecodeError as exc:
            self.metrics.decode_errors.labels("frame").inc()
            throttled.warning("frame", "skipped a malformed frame: %s", exc)
            return
        for kind in frame.types:
            self.metrics.messages.labels(kind).inc()
        for kind, reason in frame.errors:  # skipped parts; the rest of the frame goes on
            self.metrics.decode_errors.labels(kind).inc()
            throttled.warning(kind, "skipped a malformed %s: %s", kind, reason)
        now = self.clock()
        picture, problem = update_picture(self.picture, frame, now)
        if problem is not None:
            self.metrics.decode_errors.labels("message").inc()
            throttled.warning("fees", "ignored a malformed fee message: %s", problem)
        self.set_picture(picture)
        out = Step()
        if frame.blocks:
            out = self.tracker.on_blocks(frame.blocks)
            self.audit.saw_blocks(frame.blocks, new=False)
        delta = frame.delta
        if delta is not None:
            verdict = self.sequence.observe(delta.sequence)
            if verdict in ("gap", "reset"):
                self.metrics.sequence_gaps.inc()
                log.warning("mempool sequence %s at %s: resyncing", verdict, delta.sequence)
                self.resync.set()
        held: list[dict[str, Any]] = []
        if frame.block is not None:
            mined = delta.mined if delta is not None else []
            delta = delta or MempoolDelta(None)
            out = out.merge(self.tracker.on_block(frame.block, mined, now, delta, self.picture))
            self.audit.saw_blocks([frame.block], new=True)
        elif delta is not None:
            held = self.prevouts.hold_back(delta, self.floor_sats())  # examined once fetched
            out = out.merge(self.tracker.on_delta(delta, now, self.picture))
        if delta is not None:
            self.known.apply(delta)
        await self.publish(out, received_at)
        self.prevouts.start(held, received_at)

    def floor_sats(self) -> int:
        return self.tracker.floor(self.picture)

    # --- publishing ---------------------------------------------------------------------------

    async def publish(self, out: Step, received_at: float | None = None) -> None:
        """Save the step's signals in one batch, then update metrics and hand alerts on."""
        self.metrics.record_step(out)
        if out.forks:
            log.warning("chain reorganisation: %d fork(s); reopened whales go to REST", out.forks)
        if out.blocks is not None:
            self._unsaved_blocks = out.blocks  # saved by the next tick, off the frame path
        if out.errors:
            throttled.warning(
                "transaction",
                "skipped %d malformed transactions: %s",
                len(out.errors),
                out.errors[0],
            )
        if not out.events:
            return
        # Never raises for a sick disk: the store keeps what it cannot write and retries.
        await self.store.save(event.signal for event in out.events)
        now = self.clock()
        latency = None if received_at is None else time.time() - received_at
        for event in out.events:
            self._count(event, latency)
            if self.notifier is not None:
                self.notifier.submit(event)
        self._refresh_gauges(now)

    async def save_blocks(self) -> None:
        """Persist the known chain if it changed, so a reorg is seen across a restart."""
        blocks, self._unsaved_blocks = self._unsaved_blocks, None
        if blocks is None:
            return
        try:
            await self.store.save_blocks(blocks)
        except Exception as exc:  # a sick disk: the store's health says so; retried next tick
            self._unsaved_blocks = self._unsaved_blocks or blocks
            self.metrics.store_errors.inc()
            throttled.warning("blocks", "saving the known blocks failed (retried): %s", exc)

    async def flush(self) -> None:
        """Save what the store and the known chain still hold in memory (at shutdown)."""
        await self.save_blocks()
        await self.store.flush(force=True)

    def _count(self, event: Event, latency: float | None) -> None:
        signal = event.signal
        if event.kind is EventKind.DETECTED:
            log.info(
                "whale %s %.2f BTC %s%s fee %.1f sat/vB urgency %s",
                signal.txid,
                signal.value_btc,
                signal.flow.value,
                f" ({signal.entity})" if signal.entity else "",
                signal.effective_fee_rate,
                signal.urgency_level.value,
            )
        if event.kind in (EventKind.RESOLVED, EventKind.CORRECTED):
            self.accuracy.record(signal.chain_id, signal.resolved_at or self.clock(), signal.hit)
        self.metrics.record_event(event, seen=self.recall.confirmed(signal), latency=latency)

    def _refresh_gauges(self, now: float) -> None:
        self.accuracy.advance(now)
        self.metrics.record_state(self.tracker.pending_by_flow, self.accuracy.snapshot())

    # --- the fee picture -----------------------------------------------------------------------

    def set_picture(self, picture: FeePicture) -> None:
        self.picture = picture
        self.metrics.record_picture(picture)

    async def refresh_from_rest(self) -> None:
        """Fill what the stream has not sent (or sent too long ago) from REST; never raises.

        Frames keep arriving during the awaits, so each answer is applied to the picture of
        that moment, never to a copy taken before.
        """
        now = self.clock()
        stale = not self.picture.fresh_blocks(now, FEE_MAX_AGE)
        with _logged("fee fallback"):
            if stale:
                blocks = await self.rest.mempool_blocks()
                self.set_picture(with_rest_blocks(self.picture, blocks, now))
            if stale or self.picture.recommended is None:
                fees = await self.rest.recommended_fees()
                self.set_picture(with_rest_fees(self.picture, fees))
        with _logged("tip height"):
            if self.picture.tip_height is None:
                self.set_picture(with_tip(self.picture, await self.rest.tip_height()))
        with _logged("price"):
            price_at = self.picture.price_at
            if price_at is None or now - price_at >= self.settings.price_refresh:
                price = await self.rest.price_usd()
                if price is not None:
                    self.set_picture(with_price(self.picture, price, now))
        if price_expired(self.picture, now, PRICE_MAX_AGE):
            self.set_picture(with_price(self.picture, None, now))  # old is worse than none

    # --- outcomes over REST ---------------------------------------------------------------------

    async def check_statuses(self, txids: Iterable[str]) -> int:
        """Ask REST about each txid (bounded by the client) and apply the answers."""

        async def one(txid: str) -> None:
            with _logged(f"status of {txid}"):
                status = await self.rest.tx_status(txid)
                if not status.found and (by := await self.rest.replacement_of(txid)):
                    # Gone because it was replaced (while we were away): follow the replacement.
                    by_status = await self.rest.tx_status(by)
                    by_tx = await self._fetch_any(by)
                    step = self.tracker.on_replacement(
                        txid, by, by_status, self.clock(), self.picture, by_tx
                    )
                else:
                    step = self.tracker.on_status(txid, status, self.clock())
                await self.publish(step)

        txids = [txid for txid in dict.fromkeys(txids) if txid not in self._checking]
        self._checking.update(txids)  # a reconcile under way is not started again by a tick
        try:
            await asyncio.gather(*(one(txid) for txid in txids))
        finally:
            self._checking.difference_update(txids)
        return len(txids)

    async def tick(self) -> None:
        """Periodic work: due status checks, failed fetches and audits again, sliding windows."""
        await self.save_blocks()
        await self.check_statuses(self.tracker.due_checks(self.clock()))
        await self.resyncer.retry_failed()
        await self.audit.retry()
        self.metrics.known.set(len(self.known))
        self._refresh_gauges(self.clock())

    async def reconcile(self) -> None:
        """Ask REST about every pending whale (after a restart, an outage or a gap)."""
        await self.check_statuses(self.tracker.reconcile_all())

    async def _fetch_any(self, txid: str) -> dict[str, Any] | None:
        """The transaction's body, confirmed or not; None when REST does not have it."""
        try:
            return await self.rest.tx(txid)
        except (ExporterError, ValueError) as exc:
            log.warning("fetching %s failed: %s", txid, exc)
            return None

    async def resync_loop(self) -> None:
        """After every (re)connect or sequence gap: see `shell/resync.py`."""
        await self.resyncer.loop()

    async def retention(self) -> int:
        cutoff = self.clock() - self.settings.retention_days * 86_400
        try:
            deleted = await self.store.delete_before(cutoff)
        except StoreUnavailable:
            return 0  # the store logs its state once; retention runs again tomorrow
        except Exception:
            log.exception("retention failed")
            return 0
        self.metrics.rows_deleted.inc(deleted)
        if deleted:
            days = self.settings.retention_days
            log.info("retention deleted %d rows older than %d days", deleted, days)
        return deleted


@contextlib.contextmanager
def _logged(what: str) -> Iterator[None]:
    """Swallow and log one failure of a best-effort REST step."""
    try:
        yield
    except (ExporterError, ValueError, TypeError) as exc:
        log.warning("%s failed: %s", what, exc)
