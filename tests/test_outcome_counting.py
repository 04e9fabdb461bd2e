"""Outcome counters count each whale once; a correction is counted as a correction."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from support import make_signal, txid

from exporter.core.models import Event, EventKind, Status
from exporter.core.tracker import Step
from exporter.metrics import Metrics


def metrics() -> Metrics:
    return Metrics(CollectorRegistry(), process=False)


def outcomes(m: Metrics, outcome: Status) -> float | None:
    return m.registry.get_sample_value("whale_outcomes_total", {"outcome": outcome.value})


def corrections(m: Metrics, outcome: Status) -> float | None:
    labels = {"outcome": outcome.value}
    return m.registry.get_sample_value("whale_outcome_corrections_total", labels)


def resolved(status: Status, **changes: object) -> Event:
    signal = make_signal(txid(), 200, status=status, resolved_at=1_700_000_600.0, **changes)
    return Event(EventKind.RESOLVED, signal)


def test_reorg_reopen_and_same_outcome_again_counts_once() -> None:
    """Confirmed, reopened by a reorg, confirmed again: one confirmed whale, no correction."""
    m = metrics()
    first = resolved(Status.CONFIRMED, block_height=800_001, tip_height=800_000, predicted_blocks=1)
    m.record_event(first)
    reopened = make_signal(first.signal.chain_id, 200, corrected_from=Status.CONFIRMED)
    m.record_event(Event(EventKind.CORRECTED, reopened, Status.CONFIRMED))
    again = make_signal(first.signal.chain_id, 200, status=Status.CONFIRMED, block_height=800_002,
                        tip_height=800_000, predicted_blocks=1)  # fmt: skip
    m.record_event(Event(EventKind.CORRECTED, again, Status.CONFIRMED))
    assert outcomes(m, Status.CONFIRMED) == 1
    assert corrections(m, Status.CONFIRMED) == 0
    assert m.registry.get_sample_value("whale_confirmation_blocks_count") == 1


def test_dropped_corrected_to_confirmed_counts_confirmed_and_the_correction() -> None:
    """A dropped whale seen in a block (in time: a hit) is counted as confirmed, and the
    dropped outcome and its miss are withdrawn."""
    m = metrics()
    dropped = resolved(Status.DROPPED)
    m.record_event(dropped)
    mined = make_signal(dropped.signal.chain_id, 200, status=Status.CONFIRMED,
                        block_height=800_001, tip_height=800_000, predicted_blocks=2,
                        corrected_from=Status.DROPPED, corrected_hit=False)  # fmt: skip
    m.record_event(Event(EventKind.CORRECTED, mined, Status.DROPPED))
    assert outcomes(m, Status.DROPPED) == 1 and corrections(m, Status.DROPPED) == 1
    assert outcomes(m, Status.CONFIRMED) == 1 and corrections(m, Status.CONFIRMED) == 0
    net = {s: outcomes(m, s) - corrections(m, s) for s in (Status.DROPPED, Status.CONFIRMED)}
    assert net == {Status.DROPPED: 0, Status.CONFIRMED: 1}

    def predictions(name: str) -> tuple[float | None, ...]:
        return tuple(m.registry.get_sample_value(name, {"result": r}) for r in ("hit", "miss"))

    assert predictions("whale_predictions_total") == (1, 1)
    assert predictions("whale_prediction_withdrawals_total") == (0, 1)  # net: one hit


def test_forks_are_counted_from_steps() -> None:
    """Each fork a tracker step reports is counted in whale_chain_reorgs_total."""
    m = metrics()
    m.record_step(Step(seen=3, forks=1, errors=["bad"]))
    assert m.registry.get_sample_value("whale_chain_reorgs_total") == 1
    assert m.registry.get_sample_value("whale_mempool_transactions_seen_total") == 3
