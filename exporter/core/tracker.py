"""Pending whales and what becomes of them. Pure: stream messages in, events out.

The tracker owns every pending signal, the index from txid and spent outpoint to its chains,
the chain of known blocks, and a bounded memory of resolved chains (for corrections and for
dedup). It never does I/O and never reads the clock: every call gets `now`, and the ones that
score whales get the fee picture of that moment. When it needs the REST status of a transaction
it says so through `due_checks`, and the shell feeds the answer back through `on_status`.

One transaction can replace several whales (it spends an outpoint of each): every chain it
replaces follows it, and all of them resolve with it.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from exporter.core.addresses import AddressBook
from exporter.core.chain import KnownChain
from exporter.core.detect import detect, gross_sats
from exporter.core.errors import DecodeError
from exporter.core.fees import FeePicture, score
from exporter.core.frames import MempoolDelta
from exporter.core.models import (
    SATS_PER_BTC,
    Detection,
    Event,
    EventKind,
    Flow,
    Signal,
    Status,
    TxStatus,
)

DAY = 86_400.0


@dataclass(slots=True)
class Step:
    """What one tracker call produced: events, and counts for metrics."""

    events: list[Event] = field(default_factory=list)
    seen: int = 0
    errors: list[str] = field(default_factory=list)
    forks: int = 0  # known blocks found orphaned (reorgs)
    blocks: list[tuple[int, str]] | None = None  # the known chain, when it changed

    def merge(self, other: Step) -> Step:
        self.events.extend(other.events)
        self.seen += other.seen
        self.errors.extend(other.errors)
        self.forks += other.forks
        self.blocks = other.blocks if other.blocks is not None else self.blocks
        return self


class ChainIndex:
    """Pending chains by member txid, and by the outpoints their newest members spend."""

    def __init__(self, pending: Mapping[str, Signal]) -> None:
        self.pending = pending
        self.chains: dict[str, list[str]] = {}  # every member of a pending chain -> chain ids
        self.spent: dict[str, dict[int, str]] = {}  # prev txid -> vout -> spending txid

    def __contains__(self, txid: str) -> bool:
        return txid in self.chains

    def members(self, txid: str) -> list[Signal]:
        """The pending chains that `txid` belongs to."""
        return [self.pending[chain_id] for chain_id in self.chains.get(txid, ())]

    def following(self, txid: str) -> list[Signal]:
        """The pending chains whose newest member is `txid`."""
        return [signal for signal in self.members(txid) if signal.txid == txid]

    def conflicts(
        self, tx: dict[str, Any], replaced_by: Mapping[Any, list[str]]
    ) -> Sequence[Signal]:
        """The pending chains a transaction replaces (every transaction asks: kept lean)."""
        found: dict[str, Signal] | None = None
        if replaced_by:
            for old in replaced_by.get(tx.get("txid"), ()):
                found = found if found is not None else {}
                found.update((s.chain_id, s) for s in self.members(old))
        spent: dict[Any, dict[Any, str]] = self.spent
        for item in tx.get("vin") or ():
            vouts = spent.get(item.get("txid")) if isinstance(item, dict) else None
            if vouts is not None:
                spender = vouts.get(item.get("vout"))
                if spender is not None and spender != tx.get("txid"):
                    found = found if found is not None else {}
                    found.update((s.chain_id, s) for s in self.following(spender))
        return () if found is None else list(found.values())

    def add(self, signal: Signal) -> None:
        """Index every member of the chain and the outpoints of its newest."""
        for txid in signal.chain:
            self._member(txid, signal.chain_id)
        self.index(signal)

    def index(self, signal: Signal) -> None:
        """Index the chain's newest member and its outpoints."""
        self._member(signal.txid, signal.chain_id)
        for txid, vout in signal.outpoints:
            self.spent.setdefault(txid, {})[vout] = signal.txid

    def _member(self, txid: str, chain_id: str) -> None:
        chains = self.chains.setdefault(txid, [])
        if chain_id not in chains:
            chains.append(chain_id)

    def unindex_outpoints(self, signal: Signal) -> None:
        for txid, vout in signal.outpoints:
            vouts = self.spent.get(txid)
            spender = vouts.get(vout) if vouts else None
            if vouts is None or spender is None or spender not in signal.chain:
                continue
            if any(other is not signal for other in self.following(spender)):
                continue  # another chain still follows this transaction
            del vouts[vout]
            if not vouts:
                del self.spent[txid]

    def remove(self, signal: Signal) -> None:
        """Forget the chain (call while it is still pending)."""
        self.unindex_outpoints(signal)
        for txid in signal.chain:
            chains = self.chains.get(txid)
            if chains is not None and signal.chain_id in chains:
                chains.remove(signal.chain_id)
                if not chains:
                    del self.chains[txid]


class Tracker:
    def __init__(
        self,
        book: AddressBook,
        threshold_sats: int,
        *,
        threshold_usd: float | None = None,
        drop_grace: float = 60.0,
        max_pending_days: float = 14.0,
        remember: int = 10_000,
        fee_max_age: float = 120.0,
    ) -> None:
        self.book = book
        self.threshold_sats = threshold_sats
        self.threshold_usd = threshold_usd
        self.drop_grace = drop_grace
        self.max_pending = max_pending_days * DAY
        self.remember = remember
        self.fee_max_age = fee_max_age
        self.pending: dict[str, Signal] = {}
        self.pending_by_flow: Counter[Flow] = Counter()
        self.chain = KnownChain()
        self._index = ChainIndex(self.pending)
        self._resolved: OrderedDict[str, Signal] = OrderedDict()  # chain_id -> signal
        self._resolved_txids: dict[str, str] = {}
        self._checked: dict[str, float] = {}  # chain_id -> last status check requested
        self._recheck: set[str] = set()  # chains whose outcome must be verified again

    # --- queries ---------------------------------------------------------------------------

    def is_known(self, txid: str) -> bool:
        return txid in self._index or txid in self._resolved_txids

    def replaces_pending(self, tx: dict[str, Any]) -> bool:
        """Whether `tx` spends an outpoint of a pending whale: its replacement, not a new one."""
        return bool(self._index.conflicts(tx, {}))

    def floor(self, picture: FeePicture) -> int:
        """Smallest value that makes a whale: the BTC threshold, or the USD one if lower."""
        usd, price = self.threshold_usd, picture.price_usd
        if usd is None or not price:
            return self.threshold_sats
        return min(self.threshold_sats, int(usd / price * SATS_PER_BTC))

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
        self, delta: MempoolDelta, now: float, picture: FeePicture, *, backfilled: bool = False
    ) -> Step:
        """Apply one `mempool-transactions` message (a poll; blocks go through `on_block`)."""
        out = Step()
        for txid in delta.removed:
            for signal in self._index.following(txid):
                signal.removed_at = now
        replaced_by: dict[Any, list[str]] = {}
        for old, by in delta.replaced:  # one new transaction replacing n comes as n pairs
            replaced_by.setdefault(by.get("txid"), []).append(old)
        candidates = delta.added
        if replaced_by:  # a replacement is also in `added`; take any that is not, once
            added = {tx.get("txid") for tx in candidates if isinstance(tx, dict)}
            missing = {
                by.get("txid"): by for _, by in delta.replaced if by.get("txid") not in added
            }
            candidates = candidates + list(missing.values())
        floor = self.floor(picture)
        for tx in candidates:
            self._one(tx, now, picture, floor, replaced_by, backfilled, out)
        return out

    def _one(
        self,
        tx: Any,
        now: float,
        picture: FeePicture,
        floor: int,
        replaced_by: Mapping[Any, list[str]],
        backfilled: bool,
        out: Step,
    ) -> None:
        try:
            gross = gross_sats(tx)
            out.seen += 1
            chains = self._index.conflicts(tx, replaced_by)
            if not chains and gross < floor:
                return
            detection = detect(tx, self.book, gross)
        except DecodeError as exc:
            out.errors.append(str(exc))
            return
        if chains:
            scoring = score(detection, picture, now, max_age=self.fee_max_age)
            for signal in chains:
                if detection.txid not in signal.chain:
                    self._follow(signal, detection, floor)
                    signal.apply(detection, scoring)
                    out.events.append(Event(EventKind.REPLACED, signal.snapshot()))
                    if signal.replaced_out:
                        self._resolve(signal, Status.REPLACED, now, out)
        elif not self.is_known(detection.txid) and detection.value_sats >= floor:
            scoring = score(detection, picture, now, max_age=self.fee_max_age)
            signal = Signal.new(detection, scoring, now, backfilled=backfilled)
            self._track(signal)
            out.events.append(Event(EventKind.DETECTED, signal.snapshot()))

    def _follow(
        self, signal: Signal, detection: Detection | None, floor: int, by: str = ""
    ) -> None:
        """Make the chain follow its replacement, marked replaced out when below the floor.

        Without the replacement's body (`detection` None) only its txid is known. The caller
        closes a chain replaced out.
        """
        self._index.unindex_outpoints(signal)
        if detection is not None:
            signal.take(detection)
            signal.replaced_out = detection.value_sats < floor
        else:
            signal.txid, signal.outpoints = by, ()
        signal.chain.append(signal.txid)
        signal.removed_at = None
        self._index.index(signal)

    def on_block(
        self,
        block: Mapping[str, Any],
        mined: Iterable[str],
        now: float,
        delta: MempoolDelta,
        picture: FeePicture,
    ) -> Step:
        """A new block: its `mined` txids confirm whales; `replaced` pairs are conflicts."""
        out = Step()
        height, block_hash = block.get("height"), block.get("id")
        if not isinstance(height, int) or not isinstance(block_hash, str):
            out.errors.append("block without height or id")
            return out
        if block.get("stale"):
            self._orphan(self.chain.forget(block_hash), out, also=block_hash)
            return out
        self._see_block(height, block_hash, block.get("previousblockhash"), out)
        at = block.get("timestamp")
        at = float(at) if isinstance(at, int | float) else now
        for txid in mined:
            self._mined(txid, height, block_hash, at, out)
        floor = self.floor(picture)
        for old, by in delta.replaced:  # knocked out by a conflicting block transaction
            chains = self._index.members(old)
            if not chains:
                continue
            detection = self._detect(by, out)
            for signal in chains:
                self._follow(signal, detection, floor, by=str(by.get("txid")))
                if detection is None:
                    signal.replaced_out = True  # an unreadable replacement tests nothing
                self._finish(signal, Status.REPLACED, height, block_hash, at, out)
        return out

    def _detect(self, tx: Any, out: Step) -> Detection | None:
        try:
            return detect(tx, self.book)
        except DecodeError as exc:
            out.errors.append(str(exc))
            return None

    def on_blocks(self, blocks: Iterable[Mapping[str, Any]]) -> Step:
        """The `blocks` list (on subscribe, and again after a reorg when the server indexes)."""
        out = Step()
        for block in blocks:
            height, block_hash = block.get("height"), block.get("id")
            if isinstance(height, int) and isinstance(block_hash, str):
                if block.get("stale"):
                    self._orphan(self.chain.forget(block_hash), out, also=block_hash)
                else:
                    self._see_block(height, block_hash, block.get("previousblockhash"), out)
        return out

    def _see_block(self, height: int, block_hash: str, previous: Any, out: Step) -> None:
        before = self.chain.blocks()
        self._orphan(self.chain.see(height, block_hash, previous), out)
        if self.chain.blocks() != before:
            out.blocks = self.chain.blocks()

    def _orphan(self, hashes: list[str], out: Step, also: str | None = None) -> None:
        """Known blocks left the chain: reopen the whales they resolved, for REST to decide."""
        if hashes:
            out.forks += 1
            out.blocks = self.chain.blocks()
        for block_hash in dict.fromkeys([*hashes, *([also] if also else [])]):
            for signal in [s for s in self._resolved.values() if s.block_hash == block_hash]:
                self._reopen(signal)
                out.events.append(
                    Event(EventKind.CORRECTED, signal.snapshot(), signal.corrected_from)
                )

    def _reopen(self, signal: Signal) -> None:
        self._resolved.pop(signal.chain_id, None)
        for txid in signal.chain:
            if self._resolved_txids.get(txid) == signal.chain_id:
                del self._resolved_txids[txid]
        signal.withdraw_outcome()
        signal.status = Status.PENDING
        signal.resolved_at = signal.block_height = signal.block_hash = signal.removed_at = None
        self._track(signal)
        self._recheck.add(signal.chain_id)

    def _mined(self, txid: str, height: int, block_hash: str, at: float, out: Step) -> None:
        if txid not in self._index and txid not in self._resolved_txids:
            return  # nearly every mined transaction: not a whale we know
        chains = self._index.members(txid)
        for signal in chains:
            signal.txid = txid
            status = Status.CONFIRMED if txid == signal.chain_id else Status.REPLACED
            self._finish(signal, status, height, block_hash, at, out)
        if chains:
            return
        chain_id = self._resolved_txids.get(txid)
        done = self._resolved.get(chain_id) if chain_id else None
        if done is not None and done.status in (Status.DROPPED, Status.EXPIRED):
            # Called dropped too early: the block says otherwise. Correct the outcome.
            done.withdraw_outcome()
            done.txid = txid
            done.status = Status.CONFIRMED if txid == done.chain_id else Status.REPLACED
            done.block_height, done.block_hash, done.resolved_at = height, block_hash, at
            out.events.append(Event(EventKind.CORRECTED, done.snapshot(), done.corrected_from))

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
        """An outcome; for a chain reopened earlier it corrects the outcome counted then."""
        signal.status = status
        signal.resolved_at = at
        self._untrack(signal)
        self._forget_later(signal)
        if signal.corrected_from is None:
            out.events.append(Event(EventKind.RESOLVED, signal.snapshot()))
        else:
            out.events.append(Event(EventKind.CORRECTED, signal.snapshot(), signal.corrected_from))

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
        return list(dict.fromkeys(due))  # chains that follow one replacement share its txid

    def reconcile_all(self) -> list[str]:
        """Every pending txid: after a restart, an outage or a gap, ask REST about each."""
        self._recheck.update(self.pending)
        return list(dict.fromkeys(signal.txid for signal in self.pending.values()))

    def on_replacement(
        self,
        txid: str,
        by: str,
        status: TxStatus,
        now: float,
        picture: FeePicture,
        tx: Any = None,
    ) -> Step:
        """REST says `by` replaced pending `txid` (found after an outage): follow the chain.

        `tx` is the replacement's body when REST had it: its value decides whether the chain
        still holds a whale (below the floor it closes as replaced out, testing nothing). The
        chain keeps its last prediction, made live from its own tip.
        """
        out = Step()
        chains = [signal for signal in self._index.following(txid) if by not in signal.chain]
        detection = self._detect(tx, out) if tx is not None else None
        if detection is not None and detection.txid != by:
            detection = None
        floor = self.floor(picture)
        for signal in chains:
            self._follow(signal, detection, floor, by=by)
            out.events.append(Event(EventKind.REPLACED, signal.snapshot()))
        for signal in self._index.following(by):
            if status.confirmed and status.block_height is not None:
                block_hash, at = status.block_hash or "", status.block_time or now
                self._finish(signal, Status.REPLACED, status.block_height, block_hash, at, out)
            elif signal.replaced_out:
                self._resolve(signal, Status.REPLACED, now, out)
            elif status.found:
                signal.removed_at = None  # the replacement is pending: keep following the chain
        if not status.found:
            out.merge(self.on_status(by, status, now))
        return out

    def on_status(self, txid: str, status: TxStatus, now: float) -> Step:
        out = Step()
        for signal in self._index.following(txid):
            self._recheck.discard(signal.chain_id)
            if status.confirmed and status.block_height is not None:
                kind = Status.CONFIRMED if txid == signal.chain_id else Status.REPLACED
                block_hash, at = status.block_hash or "", status.block_time or now
                self._finish(signal, kind, status.block_height, block_hash, at, out)
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
        self._index.add(signal)

    def _untrack(self, signal: Signal) -> None:
        self._index.remove(signal)
        if self.pending.pop(signal.chain_id, None) is not None:
            self.pending_by_flow[signal.flow] -= 1
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
