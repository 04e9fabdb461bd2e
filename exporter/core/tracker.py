"""Pending whales and what becomes of them. Pure: stream messages in, events out.

The tracker owns every pending signal, the index from txid and spent outpoint to its chain,
and a bounded memory of resolved chains (for corrections and for dedup). It never does I/O:
when it needs the REST status of a transaction it says so through `due_checks`, and the
shell feeds the answer back through `on_status`.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from exporter.core.addresses import AddressBook
from exporter.core.detect import detect, gross_sats
from exporter.core.errors import DecodeError
from exporter.core.frames import MempoolDelta
from exporter.core.models import (
    Detection,
    Event,
    EventKind,
    Flow,
    Scoring,
    Signal,
    Status,
    TxStatus,
)

Scorer = Callable[[Detection], Scoring]
DAY = 86_400.0


@dataclass(slots=True)
class Step:
    """What one tracker call produced: events, and counts for metrics."""

    events: list[Event] = field(default_factory=list)
    seen: int = 0
    errors: list[str] = field(default_factory=list)

    def merge(self, other: Step) -> Step:
        self.events.extend(other.events)
        self.seen += other.seen
        self.errors.extend(other.errors)
        return self


class Tracker:
    def __init__(
        self,
        book: AddressBook,
        threshold_sats: int,
        *,
        drop_grace: float = 60.0,
        max_pending_days: float = 14.0,
        remember: int = 10_000,
    ) -> None:
        self.book = book
        self.threshold_sats = threshold_sats
        self.drop_grace = drop_grace
        self.max_pending = max_pending_days * DAY
        self.remember = remember
        self.pending: dict[str, Signal] = {}
        self.pending_by_flow: Counter[Flow] = Counter()
        self._by_txid: dict[str, str] = {}  # every member of a pending chain -> chain_id
        # outpoints spent by each chain's newest member: prev txid -> vout -> chain_id
        self._outpoints: dict[str, dict[int, str]] = {}
        self._resolved: OrderedDict[str, Signal] = OrderedDict()  # chain_id -> signal
        self._resolved_txids: dict[str, str] = {}
        self._checked: dict[str, float] = {}  # chain_id -> last status check requested
        self._recheck: set[str] = set()  # chains whose outcome must be verified again
        self._blocks: OrderedDict[int, str] = OrderedDict()  # height -> hash

    # --- queries ---------------------------------------------------------------------------

    def is_known(self, txid: str) -> bool:
        return txid in self._by_txid or txid in self._resolved_txids

    def whale_floor(self, usd_floor_sats: int | None) -> int:
        """Smallest value that makes a whale: the BTC threshold, or the USD one if lower."""
        if usd_floor_sats is None:
            return self.threshold_sats
        return min(self.threshold_sats, usd_floor_sats)

    # --- restart ---------------------------------------------------------------------------

    def restore(self, signals: Iterable[Signal]) -> None:
        """Take back pending signals from the store after a restart."""
        for signal in signals:
            if signal.status is Status.PENDING:
                self._track(signal)

    def remember_resolved(self, signals: Iterable[Signal]) -> None:
        for signal in signals:
            self._forget_later(signal)

    # --- the stream ------------------------------------------------------------------------

    def on_delta(
        self,
        delta: MempoolDelta,
        now: float,
        scorer: Scorer,
        floor_sats: int,
        *,
        backfilled: bool = False,
    ) -> Step:
        """Apply one `mempool-transactions` message (a poll; blocks go through `on_block`)."""
        out = Step()
        for txid in delta.removed:
            chain_id = self._by_txid.get(txid)
            if chain_id is not None and self.pending[chain_id].txid == txid:
                self.pending[chain_id].removed_at = now
        replaced_by = {by.get("txid"): old for old, by in delta.replaced}
        candidates = delta.added
        if replaced_by:  # a replacement is also in `added`; take any that is not, once
            added = {tx.get("txid") for tx in candidates if isinstance(tx, dict)}
            missing = [by for _, by in delta.replaced if by.get("txid") not in added]
            candidates = candidates + missing
        for tx in candidates:
            self._one(tx, now, scorer, floor_sats, replaced_by, backfilled, out)
        return out

    def _one(
        self,
        tx: Any,
        now: float,
        scorer: Scorer,
        floor_sats: int,
        replaced_by: Mapping[Any, str],
        backfilled: bool,
        out: Step,
    ) -> None:
        try:
            gross = gross_sats(tx)
            out.seen += 1
            chain_id = self._conflict(tx, replaced_by)
            if chain_id is None and gross < floor_sats:
                return
            detection = detect(tx, self.book, gross)
        except DecodeError as exc:
            out.errors.append(str(exc))
            return
        if chain_id is not None:
            self._replace(self.pending[chain_id], detection, now, scorer, floor_sats, out)
        elif not self.is_known(detection.txid) and detection.value_sats >= floor_sats:
            signal = Signal.new(detection, scorer(detection), now, backfilled=backfilled)
            self._track(signal)
            out.events.append(Event(EventKind.DETECTED, signal.snapshot()))

    def _conflict(self, tx: dict[str, Any], replaced_by: Mapping[Any, str]) -> str | None:
        """The pending chain this transaction replaces, if any (every transaction asks)."""
        if replaced_by:
            old = replaced_by.get(tx.get("txid"))
            if old is not None and (chain_id := self._by_txid.get(old)) is not None:
                return chain_id
        spent: dict[Any, dict[Any, str]] = self._outpoints
        for item in tx.get("vin") or ():
            vouts = spent.get(item.get("txid")) if isinstance(item, dict) else None
            if vouts is not None:
                chain_id = vouts.get(item.get("vout"))
                if chain_id is not None and self.pending[chain_id].txid != tx.get("txid"):
                    return chain_id
        return None

    def _replace(
        self,
        signal: Signal,
        detection: Detection,
        now: float,
        scorer: Scorer,
        floor_sats: int,
        out: Step,
    ) -> None:
        if detection.txid in signal.chain:
            return
        self._unindex_outpoints(signal)
        signal.apply(detection, scorer(detection))
        signal.chain.append(detection.txid)
        signal.removed_at = None
        self._index(signal)
        if detection.value_sats < floor_sats:
            signal.replaced_out = True
            out.events.append(Event(EventKind.REPLACED, signal.snapshot()))
            self._resolve(signal, Status.REPLACED, now, out)
        else:
            out.events.append(Event(EventKind.REPLACED, signal.snapshot()))

    def on_block(
        self, block: Mapping[str, Any], mined: Iterable[str], now: float, delta: MempoolDelta
    ) -> Step:
        """A new block: its `mined` txids confirm whales; `replaced` pairs are conflicts."""
        out = Step()
        height, block_hash = block.get("height"), block.get("id")
        if not isinstance(height, int) or not isinstance(block_hash, str):
            out.errors.append("block without height or id")
            return out
        if block.get("stale"):
            self._reopen_block(block_hash, out)
            return out
        self._see_block(height, block_hash, out)
        at = block.get("timestamp")
        at = float(at) if isinstance(at, int | float) else now
        for txid in mined:
            self._mined(txid, height, block_hash, at, out)
        for old, by in delta.replaced:  # knocked out by a conflicting block transaction
            chain_id = self._by_txid.get(old)
            by_txid = by.get("txid")
            if chain_id is not None and isinstance(by_txid, str):
                signal = self.pending[chain_id]
                signal.txid = by_txid
                signal.chain.append(by_txid)
                self._finish(signal, Status.REPLACED, height, block_hash, at, out)
        return out

    def on_blocks(self, blocks: Iterable[Mapping[str, Any]]) -> Step:
        """The `blocks` list (on subscribe, and again after a reorg)."""
        out = Step()
        for block in blocks:
            height, block_hash = block.get("height"), block.get("id")
            if isinstance(height, int) and isinstance(block_hash, str):
                if block.get("stale"):
                    self._reopen_block(block_hash, out)
                else:
                    self._see_block(height, block_hash, out)
        return out

    def _see_block(self, height: int, block_hash: str, out: Step) -> None:
        known = self._blocks.get(height)
        if known is not None and known != block_hash:
            self._reopen_block(known, out)  # a reorg: the earlier block at this height is gone
        self._blocks[height] = block_hash
        self._blocks.move_to_end(height)
        while len(self._blocks) > 200:
            self._blocks.popitem(last=False)

    def _reopen_block(self, block_hash: str, out: Step) -> None:
        for signal in [s for s in self._resolved.values() if s.block_hash == block_hash]:
            self._reopen(signal)
            out.events.append(Event(EventKind.CORRECTED, signal.snapshot()))

    def _reopen(self, signal: Signal) -> None:
        self._resolved.pop(signal.chain_id, None)
        for txid in signal.chain:
            self._resolved_txids.pop(txid, None)
        signal.status = Status.PENDING
        signal.resolved_at = signal.block_height = signal.block_hash = None
        self._track(signal)
        self._recheck.add(signal.chain_id)

    def _mined(self, txid: str, height: int, block_hash: str, at: float, out: Step) -> None:
        chain_id = self._by_txid.get(txid)
        if chain_id is not None:
            signal = self.pending[chain_id]
            signal.txid = txid
            status = Status.CONFIRMED if txid == signal.chain_id else Status.REPLACED
            self._finish(signal, status, height, block_hash, at, out)
            return
        chain_id = self._resolved_txids.get(txid)
        done = self._resolved.get(chain_id) if chain_id else None
        if done is not None and done.status in (Status.DROPPED, Status.EXPIRED):
            # Called dropped too early: the block says otherwise. Correct the outcome.
            done.txid = txid
            done.status = Status.CONFIRMED if txid == done.chain_id else Status.REPLACED
            done.block_height, done.block_hash, done.resolved_at = height, block_hash, at
            out.events.append(Event(EventKind.CORRECTED, done.snapshot()))

    def _finish(
        self,
        signal: Signal,
        status: Status,
        height: int,
        block_hash: str,
        at: float,
        out: Step,
    ) -> None:
        signal.block_height, signal.block_hash = height, block_hash
        self._resolve(signal, status, at, out)

    def _resolve(self, signal: Signal, status: Status, at: float, out: Step) -> None:
        signal.status = status
        signal.resolved_at = at
        self._untrack(signal)
        self._forget_later(signal)
        out.events.append(Event(EventKind.RESOLVED, signal.snapshot()))

    # --- REST checks -----------------------------------------------------------------------

    def due_checks(self, now: float, *, recheck_every: float = 3_600.0) -> list[str]:
        """Txids whose REST status decides their outcome now.

        A whale removed without a replacement past the grace period may be dropped; one
        pending longer than the maximum may have expired; a reopened one needs its truth.
        """
        due = []
        for chain_id, signal in self.pending.items():
            removed = signal.removed_at is not None and now - signal.removed_at >= self.drop_grace
            old = now - signal.detected_at >= self.max_pending
            recently = now - self._checked.get(chain_id, float("-inf")) < (
                self.drop_grace if removed else recheck_every
            )
            if chain_id in self._recheck or ((removed or old) and not recently):
                self._checked[chain_id] = now
                self._recheck.discard(chain_id)
                due.append(signal.txid)
        return due

    def reconcile_all(self) -> list[str]:
        """Every pending txid: after a restart, an outage or a gap, ask REST about each."""
        self._recheck.update(self.pending)
        return [signal.txid for signal in self.pending.values()]

    def on_replacement(self, txid: str, by: str, status: TxStatus, now: float) -> Step:
        """REST says `by` replaced pending `txid` (found after an outage): follow the chain."""
        out = Step()
        chain_id = self._by_txid.get(txid)
        if chain_id is None or self._by_txid.get(by, chain_id) != chain_id:
            return out
        signal = self.pending[chain_id]
        if by not in signal.chain:
            self._unindex_outpoints(signal)
            signal.outpoints = ()  # the replacement's inputs are not known here
            signal.chain.append(by)
            signal.txid = by
            self._by_txid[by] = chain_id
            out.events.append(Event(EventKind.REPLACED, signal.snapshot()))
        if status.confirmed and status.block_height is not None:
            block_hash, at = status.block_hash or "", status.block_time or now
            self._finish(signal, Status.REPLACED, status.block_height, block_hash, at, out)
        elif status.found:
            signal.removed_at = None  # the replacement is pending: keep following the chain
        else:
            out.merge(self.on_status(by, status, now))
        return out

    def on_status(self, txid: str, status: TxStatus, now: float) -> Step:
        out = Step()
        chain_id = self._by_txid.get(txid)
        if chain_id is None:
            return out
        signal = self.pending[chain_id]
        self._recheck.discard(chain_id)
        if status.confirmed and status.block_height is not None:
            signal.txid = txid
            kind = Status.CONFIRMED if txid == signal.chain_id else Status.REPLACED
            self._finish(
                signal,
                kind,
                status.block_height,
                status.block_hash or "",
                status.block_time or now,
                out,
            )
        elif now - signal.detected_at >= self.max_pending:
            self._resolve(signal, Status.EXPIRED, now, out)
        elif not status.found:
            self._resolve(signal, Status.DROPPED, now, out)
        else:
            signal.removed_at = None  # still in the mempool after all
        return out

    # --- indexes ---------------------------------------------------------------------------

    def _track(self, signal: Signal) -> None:
        self.pending[signal.chain_id] = signal
        self.pending_by_flow[signal.flow] += 1
        for txid in signal.chain:
            self._by_txid[txid] = signal.chain_id
        self._index(signal)

    def _index(self, signal: Signal) -> None:
        self._by_txid[signal.txid] = signal.chain_id
        for txid, vout in signal.outpoints:
            self._outpoints.setdefault(txid, {})[vout] = signal.chain_id

    def _unindex_outpoints(self, signal: Signal) -> None:
        for txid, vout in signal.outpoints:
            vouts = self._outpoints.get(txid, {})
            if vouts.get(vout) == signal.chain_id:
                del vouts[vout]
                if not vouts:
                    del self._outpoints[txid]

    def _untrack(self, signal: Signal) -> None:
        if self.pending.pop(signal.chain_id, None) is not None:
            self.pending_by_flow[signal.flow] -= 1
        for txid in signal.chain:
            self._by_txid.pop(txid, None)
        self._unindex_outpoints(signal)
        self._checked.pop(signal.chain_id, None)
        self._recheck.discard(signal.chain_id)

    def _forget_later(self, signal: Signal) -> None:
        self._resolved[signal.chain_id] = signal
        self._resolved.move_to_end(signal.chain_id)
        for txid in signal.chain:
            self._resolved_txids[txid] = signal.chain_id
        while len(self._resolved) > self.remember:
            _, old = self._resolved.popitem(last=False)
            for txid in old.chain:
                if self._resolved_txids.get(txid) == old.chain_id:
                    del self._resolved_txids[txid]
