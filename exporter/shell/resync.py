"""Resync: after start-up, a reconnect, a sequence gap or a backend restart, find what the
stream did not show us.

1. Sweep the projected blocks (WebSocket, gross values of the top ~8 MvB).
2. Read the instance's txid list (`/api/mempool/txids`, streamed) and diff it against the
   known-txid set; the set becomes the list (plus what the stream changed meanwhile).
3. Examine what is unknown: with `--esplora-url`, in POST batches to electrs; otherwise one
   `/api/tx/:txid` each within the REST budget, projected candidates first by gross value,
   then the deep tail. What does not fit is counted and logged, and left to the block audit.

At start-up the set is seeded instead: with esplora every transaction is paged through and
examined; without it only the projected candidates are (the deep tail of a large mempool would
cost one request per transaction), and the block audit covers the rest when it confirms.

A resync starts only once the connection has lasted `settle` seconds, so a server that opens
and closes at once causes none; the txid list is read at most every `--resync-min-interval`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from array import array
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from exporter.core.frames import MempoolDelta, well_formed
from exporter.core.known import prefix, sorted_keys
from exporter.core.models import EventKind
from exporter.errors import ExporterError, NotFound
from exporter.logs import Throttled
from exporter.shell import backfill
from exporter.shell.esplora import Esplora

if TYPE_CHECKING:
    from exporter.pipeline import Pipeline

log = logging.getLogger(__name__)
throttled = Throttled(log)
SWEEP_TIMEOUT = 60.0
FETCH_CHUNK = 100  # transactions examined and published together
RETRY_ATTEMPTS = 5  # a failed fetch is retried this often (at each outcome check) at most
MAX_FAILED = 10_000
AGAIN_FIRST, AGAIN_MAX = 5.0, 300.0  # a resync whose source failed runs again: 5 s doubling
MAX_UNKNOWN_ESPLORA = 500_000


def _confirmed(tx: dict[str, Any]) -> bool:
    status = tx.get("status")
    return isinstance(status, dict) and status.get("confirmed") is True


class Resync:
    def __init__(
        self,
        pipeline: Pipeline,
        esplora: Esplora | None = None,
        *,
        settle: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.p = pipeline
        self.esplora = esplora
        self.settle = settle
        self.clock = clock
        self.seeded = False
        self.failed: dict[str, int] = {}  # txid -> failed attempts; retried by `retry_failed`
        self._list_at: float | None = None
        self._later: asyncio.TimerHandle | None = None
        self._again: asyncio.TimerHandle | None = None
        self._again_in = AGAIN_FIRST

    # --- when ----------------------------------------------------------------------------------

    async def loop(self) -> None:
        """Run a resync each time one is due, once the connection has settled."""
        p = self.p
        while True:
            await p.resync.wait()
            generation = p.generation
            await asyncio.sleep(self.settle)
            if not p.stream_up() or p.generation != generation:
                continue  # that connection did not last: wait for one that does
            p.resync.clear()
            try:
                await self.run()
            except Exception:  # a bug here must not stop the exporter: the next resync retries
                log.exception("resync failed")

    async def run(self) -> None:
        p = self.p
        await p.refresh_from_rest()
        if p.settings.backfill:
            await self.sweep()
        await p.reconcile()

    # --- what ----------------------------------------------------------------------------------

    async def sweep(self) -> int:
        """One resync sweep; returns how many whales it found. Never raises."""
        p, m = self.p, self.p.metrics
        errors: list[str] = []
        floor = p.floor_sats()
        try:
            async with asyncio.timeout(SWEEP_TIMEOUT):
                projected = await backfill.projected_entries(
                    p.settings.ws_url, max_frame_bytes=p.settings.max_frame_mb * 2**20
                )
        except Exception as exc:  # the sweep is best effort; the list diff still runs
            errors.append(f"projected blocks: {exc or type(exc).__name__}")
            projected = {}
        candidates = sorted(
            (t for t, gross in projected.items() if gross >= floor and t not in p.known),
            key=lambda t: -projected[t],
        )
        candidates = [t for t in candidates if not p.tracker.is_known(t)]
        found = 0
        unknown: list[str] = []
        if not self.seeded and self.esplora is not None:
            self._list_at = self.clock()
            found += await self._esplora_seed(errors)
            if self.seeded:
                candidates = []  # every transaction was examined
        elif self._list_is_due():
            try:
                unknown = await self._read_list(projected)
            except Exception as exc:
                errors.append(f"txid list: {exc or type(exc).__name__}")
                self._list_at = None  # a failed read does not wait out the interval
            else:
                self._seeded(len(projected))
        self._run_again(failed=bool(errors))
        found += await self._examine(candidates, unknown, errors)
        result = "error" if errors else "ok"
        m.backfill_runs.labels(result).inc()
        m.backfill_recovered.inc(found)
        m.known.set(len(p.known))
        if errors:
            log.warning("resync: %s", "; ".join(errors))
        else:
            m.backfill_last_success.set(p.clock())
        log.info(
            "resync: %d candidates, %d unknown deeper, %d new whales", len(candidates),
            len(unknown), found,
        )  # fmt: skip
        return found

    def _run_again(self, *, failed: bool) -> None:
        """After a source failed (projected blocks, txid list, esplora pages), resync again
        with backoff: what that source would have shown is unseen until then."""
        if not failed:
            self._again_in = AGAIN_FIRST
            return
        if self._again is not None:
            self._again.cancel()
        self._again = asyncio.get_running_loop().call_later(self._again_in, self.p.resync.set)
        self._again_in = min(self._again_in * 2, AGAIN_MAX)

    def _seeded(self, projected: int) -> None:
        if self.seeded:
            return
        self.seeded = True
        deep = len(self.p.known) - projected
        if deep > 0 and self.esplora is None:
            log.info(
                "start-up: %d mempool transactions lie below the projected blocks and are not "
                "examined (--esplora-url would); the block audit covers them when they confirm",
                deep,
            )

    def _list_is_due(self) -> bool:
        now, interval = self.clock(), self.p.settings.resync_min_interval
        if self._list_at is None or now - self._list_at >= interval:
            self._list_at = now
            if self._later is not None:
                self._later.cancel()
                self._later = None
            return True
        if self._later is None:  # read it once the interval is over
            wait = self._list_at + interval - now
            self._later = asyncio.get_running_loop().call_later(wait, self.p.resync.set)
        return False

    async def _read_list(self, projected: dict[str, int]) -> list[str]:
        """Stream the txid list into a new known set; return unknown txids not in `projected`."""
        p = self.p
        known, seeding = p.known, not self.seeded
        limit = MAX_UNKNOWN_ESPLORA if self.esplora else p.settings.resync_fetch_limit
        keys: array[int] = array("Q")
        unknown: list[str] = []
        beyond = 0

        def take(txids: list[str]) -> None:
            nonlocal beyond
            for txid in txids:
                key = prefix(txid)
                if seeding or known.has_key(key) or txid in projected:
                    keys.append(key)
                elif len(unknown) < limit:
                    unknown.append(txid)
                    keys.append(key)
                else:
                    beyond += 1  # left out of the set: still unknown at the next resync

        known.begin_rebuild()
        try:
            await p.rest.mempool_txids(take)
        except BaseException:
            known.abandon_rebuild()
            raise
        known.finish_rebuild(await asyncio.to_thread(sorted_keys, keys))  # the loop goes on
        if beyond:
            self._skip(beyond, [])
        return unknown

    async def _esplora_seed(self, errors: list[str]) -> int:
        """Page through every mempool transaction on electrs and examine each."""
        assert self.esplora is not None
        p = self.p
        keys: array[int] = array("Q")
        found = 0
        p.known.begin_rebuild()
        try:
            async with contextlib.aclosing(self.esplora.pages()) as pages:
                async for page in pages:
                    keys.extend(prefix(tx["txid"]) for tx in page)
                    found += await self._publish(page, "esplora")
        except (ExporterError, ValueError) as exc:
            p.known.abandon_rebuild()
            errors.append(f"esplora pages: {exc}")
            return found
        p.known.finish_rebuild(await asyncio.to_thread(sorted_keys, keys))
        self.seeded = True
        log.info("start-up: examined all %d mempool transactions from esplora", len(keys))
        return found

    async def _examine(self, candidates: list[str], unknown: list[str], errors: list[str]) -> int:
        """Fetch and examine candidates first, then unknown deeper txids, within the budget."""
        todo = list(dict.fromkeys([*candidates, *unknown]))
        if not todo:
            return 0
        if self.esplora is not None:
            try:
                return await self._publish(await self.esplora.txs(todo), "esplora")
            except ExporterError as exc:
                errors.append(f"esplora batch: {exc}")  # fall back to REST within the budget
        limit = self.p.settings.resync_fetch_limit
        if len(todo) > limit:
            self._skip(len(todo) - limit, todo[limit:])
            todo = todo[:limit]
        return await self.fetch(todo)

    def _skip(self, count: int, txids: Iterable[str]) -> None:
        self.p.metrics.resync_skipped.inc(count)
        for txid in txids:
            self.p.known.discard(txid)  # still unknown: a later resync may get to it
        throttled.warning(
            "resync-budget",
            "resync: %d unknown mempool transactions left unexamined (--resync-fetch-limit); "
            "the block audit covers them when they confirm",
            count,
        )

    async def fetch(self, txids: list[str]) -> int:
        """Fetch each txid over REST and examine it; one failure never voids the others."""
        found = 0
        for start in range(0, len(txids), FETCH_CHUNK):
            chunk = txids[start : start + FETCH_CHUNK]
            txs = await asyncio.gather(*(self._fetch_one(txid) for txid in chunk))
            found += await self._publish([tx for tx in txs if tx is not None], "rest")
        return found

    async def _fetch_one(self, txid: str) -> dict[str, Any] | None:
        try:
            tx = await self.p.rest.tx(txid)
        except NotFound:
            self.failed.pop(txid, None)
            return None  # left the mempool between the list and the fetch
        except (ExporterError, ValueError) as exc:
            attempts = self.failed.get(txid, 0) + 1
            if attempts >= RETRY_ATTEMPTS:
                self.failed.pop(txid, None)
                log.warning("resync: giving up on %s after %d failures: %s", txid, attempts, exc)
            elif len(self.failed) < MAX_FAILED or txid in self.failed:
                self.failed[txid] = attempts
            throttled.warning("resync-fetch", "resync: a fetch failed, retried later: %s", exc)
            return None
        self.failed.pop(txid, None)
        return None if _confirmed(tx) else tx

    async def retry_failed(self) -> int:
        """Fetch again what failed before (called with the periodic outcome checks)."""
        if not self.failed:
            return 0
        return await self.fetch(list(self.failed)[:FETCH_CHUNK])

    async def _publish(self, txs: list[dict[str, Any]], source: str) -> int:
        p = self.p
        txs, malformed = well_formed([tx for tx in txs if not _confirmed(tx)])
        if malformed:  # one bad answer costs only itself
            p.metrics.decode_errors.labels("transaction").inc(len(malformed))
            log.warning("skipped %d malformed transactions from REST: %s", len(malformed),
                        malformed[0])  # fmt: skip
        if not txs:
            return 0
        p.metrics.resync_examined.labels(source).inc(len(txs))
        delta = MempoolDelta(None, added=txs)
        out = p.tracker.on_delta(delta, p.clock(), p.picture, backfilled=True)
        out.seen = 0  # not stream traffic
        await p.publish(out)
        return sum(1 for event in out.events if event.kind is EventKind.DETECTED)
