"""Values that flow through the pipeline: detections, signals and the events between stages."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum

SATS_PER_BTC = 100_000_000
MAX_BTC = 21_000_000


class Flow(StrEnum):
    INFLOW = "inflow"
    OUTFLOW = "outflow"
    INTERNAL = "internal"
    UNKNOWN = "unknown"


class Status(StrEnum):
    """A signal is pending until it reaches exactly one outcome."""

    PENDING = "pending"
    CONFIRMED = "confirmed"
    REPLACED = "replaced"
    DROPPED = "dropped"
    EXPIRED = "expired"


OUTCOMES = (Status.CONFIRMED, Status.REPLACED, Status.DROPPED, Status.EXPIRED)


class Urgency(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


@dataclass(frozen=True, slots=True)
class Detection:
    """What one transaction says about itself, computed without any I/O."""

    txid: str
    value_sats: int  # outputs that do not pay back to an input address
    gross_sats: int  # all outputs
    fee_sats: int
    vsize: float
    fee_rate: float  # sat/vB of the transaction alone
    effective_fee_rate: float  # CPFP-aware when the instance sends it
    flow: Flow
    entity: str | None
    bip125: bool
    first_seen: float | None
    position_block: int | None
    outpoints: tuple[tuple[str, int], ...]
    value_is_gross: bool = False  # no prevouts: change could not be told apart

    @property
    def value_btc(self) -> float:
        return self.value_sats / SATS_PER_BTC


@dataclass(frozen=True, slots=True)
class Scoring:
    """Urgency and prediction for one detection against the fee picture of the moment."""

    urgency_score: float
    urgency_level: Urgency
    urgency_fallback: bool
    predicted_blocks: int | None
    tip_height: int | None
    value_usd: float | None

    @property
    def predicted_height(self) -> int | None:
        if self.tip_height is None or self.predicted_blocks is None:
            return None
        return self.tip_height + self.predicted_blocks


@dataclass(slots=True)
class Signal:
    """One whale: a replacement chain followed from detection to its outcome.

    `chain_id` is the first txid of the chain and never changes; `txid` is the newest member.
    """

    chain_id: str
    txid: str
    detected_at: float
    first_seen: float | None
    value_sats: int
    gross_sats: int
    fee_sats: int
    vsize: float
    fee_rate: float
    effective_fee_rate: float
    flow: Flow
    entity: str | None
    bip125: bool
    urgency_score: float = 0.0
    urgency_level: Urgency = Urgency.LOW
    urgency_fallback: bool = True
    predicted_blocks: int | None = None  # the newest prediction, made at `tip_height`
    predicted_height: int | None = None
    tip_height: int | None = None
    first_predicted_blocks: int | None = None  # the prediction at detection, before any bump
    first_tip_height: int | None = None
    value_usd: float | None = None
    chain: list[str] = field(default_factory=list)
    status: Status = Status.PENDING
    resolved_at: float | None = None
    block_height: int | None = None
    block_hash: str | None = None
    removed_at: float | None = None
    replaced_out: bool = False
    backfilled: bool = False
    outpoints: tuple[tuple[str, int], ...] = ()  # spent by `txid`: a conflict is a replacement
    corrected_from: Status | None = None  # the outcome counted before its latest correction
    corrected_hit: bool | None = None  # the prediction result counted with it (None: none)
    seen_in_mempool: bool = True  # False: first found in a block by the audit
    value_is_gross: bool = False  # True: no prevouts, so change could not be told apart

    @property
    def value_btc(self) -> float:
        return self.value_sats / SATS_PER_BTC

    @property
    def outcome(self) -> Status | None:
        return None if self.status is Status.PENDING else self.status

    @property
    def confirmed_whale(self) -> bool:
        """Whether a whale of this chain is in a block (itself or a whale-sized replacement)."""
        if self.block_height is None or self.replaced_out:
            return False
        return self.status in (Status.CONFIRMED, Status.REPLACED)

    @property
    def confirmation_blocks(self) -> int | None:
        """Blocks actually waited since the newest prediction: height minus its tip."""
        if self.block_height is None or self.tip_height is None:
            return None
        return max(self.block_height - self.tip_height, 1)

    @property
    def hit(self) -> bool | None:
        """Whether the prediction held; None when this outcome does not test a prediction."""
        return self._held(self.tip_height, self.predicted_blocks)

    @property
    def first_hit(self) -> bool | None:
        """Whether the prediction made at detection held (None when none was tested)."""
        return self._held(self.first_tip_height, self.first_predicted_blocks)

    def _held(self, tip: int | None, blocks: int | None) -> bool | None:
        """Whether a prediction of `blocks` made at `tip` held for this outcome."""
        if self.status in (Status.DROPPED, Status.EXPIRED):
            return False
        height = self.block_height
        if self.replaced_out or height is None or tip is None or blocks is None:
            return None
        return max(height - tip, 1) <= blocks

    def withdraw_outcome(self) -> None:
        """Remember the outcome (and its prediction result) a correction is about to replace."""
        self.corrected_from, self.corrected_hit = self.status, self.hit

    def apply(self, detection: Detection, scoring: Scoring) -> None:
        """Take the fee, value and score of the chain's newest transaction.

        Each prediction keeps the tip it was made at, so it is judged from there.
        """
        self.take(detection)
        self.urgency_score = scoring.urgency_score
        self.urgency_level = scoring.urgency_level
        self.urgency_fallback = scoring.urgency_fallback
        self.predicted_blocks = scoring.predicted_blocks
        self.predicted_height = scoring.predicted_height
        self.tip_height = scoring.tip_height
        if scoring.value_usd is not None:
            self.value_usd = scoring.value_usd

    def take(self, detection: Detection) -> None:
        """Take what the chain's newest transaction says about itself (no new prediction)."""
        self.txid = detection.txid
        self.value_sats = detection.value_sats
        self.gross_sats = detection.gross_sats
        self.fee_sats = detection.fee_sats
        self.vsize = detection.vsize
        self.fee_rate = detection.fee_rate
        self.effective_fee_rate = detection.effective_fee_rate
        self.bip125 = detection.bip125
        self.outpoints = detection.outpoints
        self.value_is_gross = detection.value_is_gross

    @classmethod
    def new(
        cls, detection: Detection, scoring: Scoring, now: float, *, backfilled: bool = False
    ) -> Signal:
        signal = cls(
            chain_id=detection.txid,
            txid=detection.txid,
            detected_at=now,
            first_seen=detection.first_seen,
            value_sats=detection.value_sats,
            gross_sats=detection.gross_sats,
            fee_sats=detection.fee_sats,
            vsize=detection.vsize,
            fee_rate=detection.fee_rate,
            effective_fee_rate=detection.effective_fee_rate,
            flow=detection.flow,
            entity=detection.entity,
            bip125=detection.bip125,
            first_predicted_blocks=scoring.predicted_blocks,
            first_tip_height=scoring.tip_height,
            chain=[detection.txid],
            backfilled=backfilled,
        )
        signal.apply(detection, scoring)
        return signal

    def snapshot(self) -> Signal:
        """A copy safe to hand to another task (the notifier, the store)."""
        return dataclasses.replace(self, chain=list(self.chain))


class EventKind(StrEnum):
    DETECTED = "detected"  # a new whale
    REPLACED = "replaced"  # the chain gained a member (still pending, or replaced out)
    RESOLVED = "resolved"  # reached its first outcome
    CORRECTED = "corrected"  # an outcome was wrong: reopened by a reorg, or resolved again


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    signal: Signal  # a snapshot taken when the event happened
    previous: Status | None = None  # CORRECTED: the outcome counted before (None: none yet)

    @property
    def changes_outcome(self) -> bool:
        """Whether the signal now has an outcome that was not counted for it before."""
        outcome = self.signal.outcome
        if self.kind is EventKind.RESOLVED:
            return outcome is not None
        return self.kind is EventKind.CORRECTED and outcome not in (None, self.previous)


@dataclass(frozen=True, slots=True)
class TxStatus:
    """REST /tx/:txid/status; `found=False` for a 404."""

    found: bool
    confirmed: bool = False
    block_height: int | None = None
    block_hash: str | None = None
    block_time: float | None = None
