"""The tracker's state machine: detection, dedup, replacement chains and outcomes."""

from __future__ import annotations

from support import BTC, make_tx, txid

from exporter.core.addresses import AddressBook
from exporter.core.fees import FeePicture, parse_mempool_blocks
from exporter.core.frames import MempoolDelta
from exporter.core.models import EventKind, Status, TxStatus
from exporter.core.tracker import Tracker

THRESHOLD = 100 * BTC
NOW = 1_700_000_000.0
# 20 sat/vB (make_tx's default rate) waits for the second projected block; tip 800,000.
PICTURE = FeePicture(
    blocks=parse_mempool_blocks(
        [{"blockVSize": 1_000_000, "medianFee": 40, "feeRange": [30, 32, 35, 40, 50, 60, 90]},
         {"blockVSize": 1_000_000, "medianFee": 15, "feeRange": [10, 11, 12, 15, 20, 25, 29]},
         {"blockVSize": 5_000_000, "medianFee": 3, "feeRange": [1, 2, 2.5, 3, 5, 7, 9]}]
    ),
    blocks_at=NOW,
    tip_height=800_000,
)  # fmt: skip


def tracker() -> Tracker:
    return Tracker(AddressBook({}), THRESHOLD, drop_grace=60, max_pending_days=14)


def poll(t: Tracker, *txs: dict, removed=(), replaced=(), now: float = NOW, seq: int = 1):
    delta = MempoolDelta(seq, added=list(txs), removed=list(removed), replaced=list(replaced))
    return t.on_delta(delta, now, PICTURE)


def block(height: int, block_hash: str | None = None, *, stale: bool = False) -> dict:
    return {"id": block_hash or txid(), "height": height, "timestamp": NOW + 600, "stale": stale}


def test_threshold_is_inclusive() -> None:
    """A whale exactly at the threshold is detected; one satoshi below is not."""
    t = tracker()
    at = make_tx([("a", THRESHOLD)])
    below = make_tx([("b", THRESHOLD - 1)])
    out = poll(t, at, below)
    assert [e.signal.txid for e in out.events] == [at["txid"]]
    assert out.seen == 2


def test_seen_twice_is_detected_once() -> None:
    """The same whale in two messages (stream and backfill) makes one signal."""
    t = tracker()
    whale = make_tx([("a", 200 * BTC)])
    assert len(poll(t, whale).events) == 1
    assert poll(t, whale).events == []
    assert t.on_delta(MempoolDelta(None, added=[whale]), NOW, PICTURE,
                      backfilled=True).events == []  # fmt: skip


def test_malformed_transactions_are_counted_and_skipped() -> None:
    """A broken transaction is an error entry, and the good one beside it still counts."""
    t = tracker()
    good = make_tx([("a", 200 * BTC)])
    out = poll(t, {"vout": "nope"}, "not a tx", good)
    assert len(out.errors) == 2
    assert [e.signal.txid for e in out.events] == [good["txid"]]


def test_replacement_chain_keeps_one_signal_then_confirms_as_replaced() -> None:
    """Replaced twice (in both added and replaced) then mined: one chain, outcome replaced."""
    t = tracker()
    outpoint = (txid(), 0)
    first = make_tx([("a", 200 * BTC)], spends=[outpoint], fee=2_000)
    second = make_tx([("a", 200 * BTC)], spends=[outpoint], fee=4_000)
    third = make_tx([("a", 200 * BTC)], spends=[outpoint], fee=8_000)
    assert [e.kind for e in poll(t, first).events] == [EventKind.DETECTED]
    out = poll(t, second, removed=[first["txid"]], replaced=[(first["txid"], second)])
    assert [e.kind for e in out.events] == [EventKind.REPLACED]
    # the protocol may announce the removal one message before the pair
    assert poll(t, removed=[second["txid"]]).events == []
    out = poll(t, third, replaced=[(second["txid"], third)])
    assert [e.kind for e in out.events] == [EventKind.REPLACED]
    signal = out.events[0].signal
    assert signal.chain == [first["txid"], second["txid"], third["txid"]]
    assert signal.fee_sats == 8_000
    assert len(t.pending) == 1
    out = t.on_block(
        block(800_001), ["coinbase", third["txid"]], NOW + 600, MempoolDelta(2), PICTURE
    )
    (event,) = out.events
    assert event.kind is EventKind.RESOLVED
    assert event.signal.status is Status.REPLACED
    assert event.signal.block_height == 800_001
    assert t.pending == {}


def test_conflict_without_replaced_pair_is_linked_by_outpoint() -> None:
    """A removed whale followed later by a transaction spending its outpoint is a replacement."""
    t = tracker()
    outpoint = (txid(), 3)
    first = make_tx([("a", 300 * BTC)], spends=[outpoint])
    poll(t, first)
    poll(t, removed=[first["txid"]])
    second = make_tx([("b", 299 * BTC)], spends=[outpoint], fee=50_000)
    out = poll(t, second, now=NOW + 5)
    assert [e.kind for e in out.events] == [EventKind.REPLACED]
    assert out.events[0].signal.chain_id == first["txid"]


def test_replacement_below_threshold_closes_as_replaced_out() -> None:
    """A replacement that takes the value under the threshold resolves the chain as replaced."""
    t = tracker()
    outpoint = (txid(), 0)
    first = make_tx([("a", 150 * BTC)], spends=[outpoint])
    poll(t, first)
    small = make_tx([("a", 50 * BTC)], spends=[outpoint], fee=90_000)
    out = poll(t, small, replaced=[(first["txid"], small)])
    assert [e.kind for e in out.events] == [EventKind.REPLACED, EventKind.RESOLVED]
    signal = out.events[-1].signal
    assert signal.replaced_out and signal.status is Status.REPLACED
    assert signal.hit is None  # not a test of the prediction
    assert t.pending == {}


def test_confirmed_hit_and_miss() -> None:
    """Confirmation within the predicted blocks is a hit; later is a miss."""
    t = tracker()
    fast, slow = make_tx([("a", 200 * BTC)]), make_tx([("b", 200 * BTC)])
    poll(t, fast, slow)  # predicted 2 blocks from tip 800,000
    out = t.on_block(block(800_002), [fast["txid"]], NOW, MempoolDelta(2), PICTURE)
    assert out.events[0].signal.hit is True
    out = t.on_block(block(800_003), [slow["txid"]], NOW, MempoolDelta(3), PICTURE)
    assert out.events[0].signal.status is Status.CONFIRMED
    assert out.events[0].signal.confirmation_blocks == 3
    assert out.events[0].signal.hit is False


def test_dropped_after_grace_and_rest_check_then_corrected_when_mined() -> None:
    """Removed, past the grace period and unknown to REST: dropped; a later block corrects it."""
    t = tracker()
    whale = make_tx([("a", 200 * BTC)])
    poll(t, whale)
    poll(t, removed=[whale["txid"]], now=NOW + 1)
    assert t.due_checks(NOW + 30) == []  # a replacement may still come
    assert t.due_checks(NOW + 61) == [whale["txid"]]
    out = t.on_status(whale["txid"], TxStatus(found=False), NOW + 62)
    assert out.events[0].signal.status is Status.DROPPED
    assert out.events[0].signal.hit is False
    out = t.on_block(block(800_005), [whale["txid"]], NOW + 900, MempoolDelta(9), PICTURE)
    (event,) = out.events
    assert event.kind is EventKind.CORRECTED
    assert event.signal.status is Status.CONFIRMED
    assert event.signal.block_height == 800_005


def test_still_in_mempool_is_not_dropped() -> None:
    """A removed whale that REST still finds unconfirmed stays pending."""
    t = tracker()
    whale = make_tx([("a", 200 * BTC)])
    poll(t, whale)
    poll(t, removed=[whale["txid"]])
    out = t.on_status(whale["txid"], TxStatus(found=True, confirmed=False), NOW + 70)
    assert out.events == [] and whale["txid"] in t.pending


def test_expired_after_max_pending_days() -> None:
    """A whale pending past the maximum is checked over REST and expires when unconfirmed."""
    t = tracker()
    whale = make_tx([("a", 200 * BTC)])
    poll(t, whale)
    later = NOW + 14 * 86_400 + 1
    assert t.due_checks(later) == [whale["txid"]]
    out = t.on_status(whale["txid"], TxStatus(found=True, confirmed=False), later)
    assert out.events[0].signal.status is Status.EXPIRED


def test_rest_status_confirms_with_true_block() -> None:
    """Reconciliation records an outcome that happened while away with its real block."""
    t = tracker()
    whale = make_tx([("a", 200 * BTC)])
    poll(t, whale)
    assert t.reconcile_all() == [whale["txid"]]
    status = TxStatus(True, True, 800_001, "ab" * 32, NOW + 300)
    out = t.on_status(whale["txid"], status, NOW + 5_000)
    signal = out.events[0].signal
    assert (signal.status, signal.block_height, signal.resolved_at) == (
        Status.CONFIRMED, 800_001, NOW + 300)  # fmt: skip


def test_stale_block_reopens_its_whales() -> None:
    """A block later marked stale no longer confirms its whales: they are pending again."""
    t = tracker()
    whale = make_tx([("a", 200 * BTC)])
    poll(t, whale)
    first = block(800_001)
    t.on_block(first, [whale["txid"]], NOW, MempoolDelta(2), PICTURE)
    assert t.pending == {}
    out = t.on_blocks([{**first, "stale": True}])
    assert [e.kind for e in out.events] == [EventKind.CORRECTED]
    assert out.events[0].signal.status is Status.PENDING
    assert whale["txid"] in t.pending
    assert whale["txid"] in t.due_checks(NOW + 1)


def test_height_seen_again_with_another_hash_reopens() -> None:
    """A reorg (same height, new hash) reopens the whales of the replaced block."""
    t = tracker()
    whale = make_tx([("a", 200 * BTC)])
    poll(t, whale)
    t.on_block(block(800_001, "aa" * 32), [whale["txid"]], NOW, MempoolDelta(2), PICTURE)
    out = t.on_block(block(800_001, "bb" * 32), [], NOW + 1, MempoolDelta(3), PICTURE)
    assert [e.signal.status for e in out.events] == [Status.PENDING]
    out = t.on_block(block(800_002, "cc" * 32), [whale["txid"]], NOW + 2, MempoolDelta(4), PICTURE)
    assert out.events[0].signal.block_hash == "cc" * 32


def test_block_conflict_replaces_whale() -> None:
    """A mempool whale knocked out by a conflicting block transaction resolves as replaced."""
    t = tracker()
    whale = make_tx([("a", 200 * BTC)])
    poll(t, whale)
    by = make_tx([("a", 200 * BTC)])
    delta = MempoolDelta(5, mined=[by["txid"]], replaced=[(whale["txid"], by)])
    out = t.on_block(block(800_001), delta.mined, NOW, delta, PICTURE)
    (event,) = out.events
    assert event.signal.status is Status.REPLACED
    assert event.signal.chain == [whale["txid"], by["txid"]]


def test_restore_keeps_pending_and_dedups() -> None:
    """Signals restored after a restart are pending and not detected again."""
    t = tracker()
    whale = make_tx([("a", 200 * BTC)])
    signal = poll(t, whale).events[0].signal
    fresh = tracker()
    fresh.restore([signal])
    assert poll(fresh, whale).events == []
    assert fresh.pending_by_flow[signal.flow] == 1


def test_memory_of_resolved_chains_is_bounded() -> None:
    """The memory of resolved chains never grows past its bound."""
    t = Tracker(AddressBook({}), THRESHOLD, remember=10)
    for height in range(30):
        whale = make_tx([("a", 200 * BTC)])
        poll(t, whale)
        t.on_block(block(800_000 + height), [whale["txid"]], NOW, MempoolDelta(height), PICTURE)
    assert len(t._resolved) == 10
    assert len(t._resolved_txids) == 10


def test_replacement_found_over_rest_follows_the_chain() -> None:
    """A whale replaced while away follows its replacement: pending, then replaced in a block."""
    t = tracker()
    whale = make_tx([("a", 200 * BTC)])
    poll(t, whale)
    by = txid()
    out = t.on_replacement(whale["txid"], by, TxStatus(found=True), NOW + 10, PICTURE)
    assert [e.kind for e in out.events] == [EventKind.REPLACED]
    assert t.pending[whale["txid"]].chain == [whale["txid"], by]
    status = TxStatus(True, True, 800_003, "ef" * 32, NOW + 900)
    out = t.on_replacement(whale["txid"], by, status, NOW + 1000, PICTURE)
    (event,) = out.events
    assert (event.signal.status, event.signal.block_height) == (Status.REPLACED, 800_003)
    assert event.signal.chain == [whale["txid"], by]


def test_restored_whale_is_replaced_by_a_conflict() -> None:
    """After a restart a transaction spending a restored whale's outpoint is its replacement."""
    t = tracker()
    outpoint = (txid(), 1)
    whale = make_tx([("a", 200 * BTC)], spends=[outpoint])
    signal = poll(t, whale).events[0].signal
    fresh = tracker()
    fresh.restore([signal])
    conflict = make_tx([("b", 199 * BTC)], spends=[outpoint], fee=90_000)
    out = poll(fresh, conflict)
    assert [e.kind for e in out.events] == [EventKind.REPLACED]
    assert out.events[0].signal.chain == [whale["txid"], conflict["txid"]]


def later_picture(tip: int) -> FeePicture:
    """The same fee picture once the chain has moved on to `tip`."""
    return FeePicture(blocks=PICTURE.blocks, blocks_at=NOW, tip_height=tip)


def test_fee_bump_is_judged_from_the_tip_it_was_made_at() -> None:
    """A replacement's prediction keeps its own tip: mined in the block it predicted, a hit."""
    t = tracker()
    outpoint = (txid(), 0)
    first = make_tx([("a", 200 * BTC)], spends=[outpoint])  # 20 sat/vB: 2 blocks from 800,000
    poll(t, first)
    bump = make_tx([("a", 200 * BTC)], spends=[outpoint], fee=90_000)  # 360 sat/vB: next block
    delta = MempoolDelta(2, added=[bump], replaced=[(first["txid"], bump)])
    (event,) = t.on_delta(delta, NOW + 60, later_picture(800_010)).events
    signal = event.signal
    assert (signal.tip_height, signal.predicted_blocks, signal.predicted_height) == (
        800_010, 1, 800_011)  # fmt: skip
    assert (signal.first_tip_height, signal.first_predicted_blocks) == (800_000, 2)
    out = t.on_block(block(800_011), [bump["txid"]], NOW + 600, MempoolDelta(3), PICTURE)
    done = out.events[0].signal
    assert done.confirmation_blocks == 1 and done.hit is True
    assert done.first_hit is False  # the first prediction (2 blocks from 800,000) did not hold


def test_block_double_spend_below_threshold_is_replaced_out() -> None:
    """A 150 BTC whale knocked out by a tiny conflicting block transaction tests no prediction."""
    t = tracker()
    outpoint = (txid(), 0)
    whale = make_tx([("a", 150 * BTC)], spends=[outpoint])
    poll(t, whale)
    spend = make_tx([("b", 100_000)], spends=[outpoint])  # 0.001 BTC
    delta = MempoolDelta(5, mined=["coinbase", spend["txid"]], replaced=[(whale["txid"], spend)])
    (event,) = t.on_block(block(800_001), delta.mined, NOW, delta, PICTURE).events
    assert event.kind is EventKind.RESOLVED and event.signal.status is Status.REPLACED
    assert event.signal.replaced_out is True and event.signal.hit is None
    assert event.signal.chain == [whale["txid"], spend["txid"]]
    assert t.pending == {}


def test_block_double_spend_by_a_whale_tests_the_prediction() -> None:
    """A whale-sized conflicting block transaction is a replacement that moved the value."""
    t = tracker()
    outpoint = (txid(), 0)
    whale = make_tx([("a", 150 * BTC)], spends=[outpoint])
    poll(t, whale)
    spend = make_tx([("b", 149 * BTC)], spends=[outpoint])
    delta = MempoolDelta(5, mined=[spend["txid"]], replaced=[(whale["txid"], spend)])
    (event,) = t.on_block(block(800_001), delta.mined, NOW, delta, PICTURE).events
    assert event.signal.replaced_out is False and event.signal.hit is True


def test_one_transaction_replacing_two_whales_resolves_both() -> None:
    """A transaction spending outpoints of two whales replaces both; its block resolves both."""
    t = tracker()
    op1, op2 = (txid(), 0), (txid(), 1)
    first = make_tx([("a", 150 * BTC)], spends=[op1])
    second = make_tx([("b", 150 * BTC)], spends=[op2])
    poll(t, first, second)
    merged = make_tx([("c", 300 * BTC)], [("x", 150 * BTC), ("y", 150 * BTC + 5000)],
                     spends=[op1, op2])  # fmt: skip
    out = poll(t, merged, removed=[first["txid"], second["txid"]],
               replaced=[(first["txid"], merged), (second["txid"], merged)])  # fmt: skip
    assert [e.kind for e in out.events] == [EventKind.REPLACED, EventKind.REPLACED]
    assert {e.signal.chain_id for e in out.events} == {first["txid"], second["txid"]}
    assert t.due_checks(NOW + 3_600) == []  # nothing left behind to re-check every minute
    out = t.on_block(block(800_001), [merged["txid"]], NOW + 600, MempoolDelta(3), PICTURE)
    assert sorted(e.signal.chain_id for e in out.events) == sorted([first["txid"], second["txid"]])
    assert {e.signal.status for e in out.events} == {Status.REPLACED}
    assert t.pending == {}


def test_one_conflict_by_outpoints_alone_replaces_two_whales() -> None:
    """Without replaced pairs, a transaction spending both whales' outpoints still takes both."""
    t = tracker()
    op1, op2 = (txid(), 0), (txid(), 1)
    first = make_tx([("a", 150 * BTC)], spends=[op1])
    second = make_tx([("b", 150 * BTC)], spends=[op2])
    poll(t, first, second)
    merged = make_tx([("c", 300 * BTC)], [("x", 150 * BTC), ("y", 150 * BTC + 5000)],
                     spends=[op1, op2])  # fmt: skip
    out = poll(t, merged)
    assert len(out.events) == 2 and len(t.pending) == 2
    out = t.on_status(merged["txid"], TxStatus(True, True, 800_002, "ab" * 32, NOW), NOW + 9)
    assert len(out.events) == 2 and t.pending == {}


def test_replacement_found_over_rest_below_threshold_closes_the_chain() -> None:
    """Replaced while away by a small transaction (REST /rbf): replaced out, no prediction test."""
    t = tracker()
    outpoint = (txid(), 0)
    whale = make_tx([("a", 150 * BTC)], spends=[outpoint])
    poll(t, whale)
    small = make_tx([("b", 100_000)], spends=[outpoint])
    status = TxStatus(True, True, 800_003, "ef" * 32, NOW + 900)
    out = t.on_replacement(whale["txid"], small["txid"], status, NOW + 1000, PICTURE, small)
    assert [e.kind for e in out.events] == [EventKind.REPLACED, EventKind.RESOLVED]
    done = out.events[-1].signal
    assert (done.status, done.replaced_out, done.hit) == (Status.REPLACED, True, None)
    assert done.value_sats == 100_000 and t.pending == {}


def test_rest_replacement_joins_a_chain_that_follows_it_already() -> None:
    """A second whale found replaced (over REST) by a transaction another chain follows resolves."""
    t = tracker()
    op1, op2 = (txid(), 0), (txid(), 1)
    first = make_tx([("a", 150 * BTC)], spends=[op1])
    second = make_tx([("b", 150 * BTC)], spends=[op2])
    poll(t, first, second)
    merged = make_tx([("c", 300 * BTC)], spends=[op1])  # the stream saw it replace `first` only
    poll(t, merged, replaced=[(first["txid"], merged)])
    out = t.on_replacement(second["txid"], merged["txid"], TxStatus(True), NOW + 70, PICTURE)
    assert [e.kind for e in out.events] == [EventKind.REPLACED]
    assert t.pending[second["txid"]].txid == merged["txid"]
    out = t.on_block(block(800_001), [merged["txid"]], NOW + 600, MempoolDelta(3), PICTURE)
    assert len(out.events) == 2 and t.pending == {}


def test_fork_seen_through_previousblockhash_reopens_confirmed_whales() -> None:
    """Without a re-sent `blocks`, a block whose parent is not the known tip reopens its whales."""
    t = tracker()
    whale = make_tx([("a", 200 * BTC)])
    poll(t, whale)
    t.on_block(block(800_001, "aa" * 32), [whale["txid"]], NOW, MempoolDelta(2), PICTURE)
    nxt = {**block(800_002, "cc" * 32), "previousblockhash": "bb" * 32}
    out = t.on_block(nxt, [], NOW + 600, MempoolDelta(3), PICTURE)
    (event,) = out.events
    assert (event.kind, event.signal.status) == (EventKind.CORRECTED, Status.PENDING)
    assert event.previous is Status.CONFIRMED and out.forks == 1
    assert out.blocks is not None and out.blocks[-2:] == [
        (800_001, "bb" * 32),
        (800_002, "cc" * 32),
    ]
    assert t.due_checks(NOW + 601) == [whale["txid"]]
    status = TxStatus(True, True, 800_001, "bb" * 32, NOW + 10)
    (again,) = t.on_status(whale["txid"], status, NOW + 602).events
    assert (again.kind, again.previous, again.signal.block_hash) == (
        EventKind.CORRECTED, Status.CONFIRMED, "bb" * 32)  # fmt: skip
    assert again.changes_outcome is False  # confirmed before, confirmed again: not counted twice


def test_fork_reopens_replaced_outcomes_too() -> None:
    """A chain resolved as replaced in an orphaned block is reopened like a confirmed one."""
    t = tracker()
    outpoint = (txid(), 0)
    whale = make_tx([("a", 200 * BTC)], spends=[outpoint])
    bump = make_tx([("a", 200 * BTC)], spends=[outpoint], fee=90_000)
    poll(t, whale)
    poll(t, bump, replaced=[(whale["txid"], bump)])
    t.on_block(block(800_001, "aa" * 32), [bump["txid"]], NOW, MempoolDelta(3), PICTURE)
    out = t.on_blocks([{**block(800_001, "dd" * 32), "previousblockhash": "00" * 32}])
    assert [(e.signal.chain_id, e.previous) for e in out.events] == [
        (whale["txid"], Status.REPLACED)]  # fmt: skip
    assert t.due_checks(NOW + 1) == [bump["txid"]]


def test_fork_across_a_restart_reopens_from_the_persisted_chain() -> None:
    """Known blocks restored after a restart reveal a reorg that happened while away."""
    t = tracker()
    whale = make_tx([("a", 200 * BTC)])
    poll(t, whale)
    (event,) = t.on_block(block(800_001, "aa" * 32), [whale["txid"]], NOW, MempoolDelta(2),
                          PICTURE).events  # fmt: skip
    fresh = tracker()
    fresh.chain.restore(t.chain.blocks())
    fresh.remember_resolved([event.signal])
    listed = [{**block(800_001, "bb" * 32), "previousblockhash": "00" * 32},
              {**block(800_002, "cc" * 32), "previousblockhash": "bb" * 32}]  # fmt: skip
    out = fresh.on_blocks(listed)
    assert [e.signal.status for e in out.events] == [Status.PENDING] and out.forks == 1
    assert whale["txid"] in fresh.pending


def test_dropped_then_mined_is_a_correction_to_confirmed() -> None:
    """A dropped whale seen in a block is corrected to confirmed, naming the withdrawn outcome."""
    t = tracker()
    whale = make_tx([("a", 200 * BTC)])
    poll(t, whale)
    t.on_status(whale["txid"], TxStatus(found=False), NOW + 62)
    (event,) = t.on_block(block(800_005), [whale["txid"]], NOW + 900, MempoolDelta(9),
                          PICTURE).events  # fmt: skip
    assert (event.kind, event.previous, event.signal.status) == (
        EventKind.CORRECTED, Status.DROPPED, Status.CONFIRMED)  # fmt: skip
    assert event.changes_outcome is True and event.signal.corrected_from is Status.DROPPED
    assert event.signal.corrected_hit is False  # the miss counted with `dropped`, withdrawn


def test_a_reopened_whale_keeps_the_prediction_result_counted_with_its_outcome() -> None:
    """A reorg reopening a confirmed whale remembers whether its counted prediction was a hit."""
    t = tracker()
    whale = make_tx([("a", 200 * BTC)])
    poll(t, whale)
    (done,) = t.on_block(block(800_001, "aa" * 32), [whale["txid"]], NOW, MempoolDelta(2),
                         PICTURE).events  # fmt: skip
    assert done.signal.hit is not None
    out = t.on_blocks([{**block(800_001, "dd" * 32), "previousblockhash": "00" * 32}])
    (reopened,) = out.events
    assert reopened.signal.corrected_hit is done.signal.hit


def test_pending_rest_replacement_below_threshold_closes_at_once() -> None:
    """A small replacement found over REST, still unconfirmed, closes the chain without waiting."""
    t = tracker()
    outpoint = (txid(), 0)
    whale = make_tx([("a", 150 * BTC)], spends=[outpoint])
    poll(t, whale)
    small = make_tx([("b", 2 * BTC)], spends=[outpoint])
    out = t.on_replacement(whale["txid"], small["txid"], TxStatus(True), NOW + 70, PICTURE, small)
    done = out.events[-1].signal
    assert (done.status, done.replaced_out, done.resolved_at) == (Status.REPLACED, True, NOW + 70)
    assert t.pending == {} and done.hit is None


def test_usd_threshold_lowers_the_floor_with_a_known_price() -> None:
    """With --threshold-usd and a price, the floor is the lower of the two thresholds."""
    t = Tracker(AddressBook({}), THRESHOLD, threshold_usd=5_000_000.0)
    assert t.floor(FeePicture()) == THRESHOLD  # no price: the BTC threshold
    assert t.floor(FeePicture(price_usd=100_000.0)) == 50 * BTC
    assert t.floor(FeePicture(price_usd=10_000.0)) == THRESHOLD
