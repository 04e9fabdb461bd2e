"""The tracker's state machine: detection, dedup, replacement chains and outcomes."""

from __future__ import annotations

from support import BTC, make_tx, txid

from exporter.core.addresses import AddressBook
from exporter.core.frames import MempoolDelta
from exporter.core.models import Detection, EventKind, Scoring, Status, TxStatus, Urgency
from exporter.core.tracker import Tracker

THRESHOLD = 100 * BTC
NOW = 1_700_000_000.0


def scorer(detection: Detection) -> Scoring:
    return Scoring(0.5, Urgency.MEDIUM, False, 2, 800_000, None)


def tracker() -> Tracker:
    return Tracker(AddressBook({}), THRESHOLD, drop_grace=60, max_pending_days=14)


def poll(t: Tracker, *txs: dict, removed=(), replaced=(), now: float = NOW, seq: int = 1):
    delta = MempoolDelta(seq, added=list(txs), removed=list(removed), replaced=list(replaced))
    return t.on_delta(delta, now, scorer, THRESHOLD)


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
    assert t.on_delta(MempoolDelta(None, added=[whale]), NOW, scorer, THRESHOLD,
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
    out = t.on_block(block(800_001), ["coinbase", third["txid"]], NOW + 600, MempoolDelta(2))
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
    out = t.on_block(block(800_002), [fast["txid"]], NOW, MempoolDelta(2))
    assert out.events[0].signal.hit is True
    out = t.on_block(block(800_003), [slow["txid"]], NOW, MempoolDelta(3))
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
    out = t.on_block(block(800_005), [whale["txid"]], NOW + 900, MempoolDelta(9))
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
    t.on_block(first, [whale["txid"]], NOW, MempoolDelta(2))
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
    t.on_block(block(800_001, "aa" * 32), [whale["txid"]], NOW, MempoolDelta(2))
    out = t.on_block(block(800_001, "bb" * 32), [], NOW + 1, MempoolDelta(3))
    assert [e.signal.status for e in out.events] == [Status.PENDING]
    out = t.on_block(block(800_002, "cc" * 32), [whale["txid"]], NOW + 2, MempoolDelta(4))
    assert out.events[0].signal.block_hash == "cc" * 32


def test_block_conflict_replaces_whale() -> None:
    """A mempool whale knocked out by a conflicting block transaction resolves as replaced."""
    t = tracker()
    whale = make_tx([("a", 200 * BTC)])
    poll(t, whale)
    by = make_tx([("a", 200 * BTC)])
    delta = MempoolDelta(5, mined=[by["txid"]], replaced=[(whale["txid"], by)])
    out = t.on_block(block(800_001), delta.mined, NOW, delta)
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
        t.on_block(block(800_000 + height), [whale["txid"]], NOW, MempoolDelta(height))
    assert len(t._resolved) == 10
    assert len(t._resolved_txids) == 10


def test_replacement_found_over_rest_follows_the_chain() -> None:
    """A whale replaced while away follows its replacement: pending, then replaced in a block."""
    t = tracker()
    whale = make_tx([("a", 200 * BTC)])
    poll(t, whale)
    by = txid()
    out = t.on_replacement(whale["txid"], by, TxStatus(found=True), NOW + 10)
    assert [e.kind for e in out.events] == [EventKind.REPLACED]
    assert t.pending[whale["txid"]].chain == [whale["txid"], by]
    status = TxStatus(True, True, 800_003, "ef" * 32, NOW + 900)
    out = t.on_replacement(whale["txid"], by, status, NOW + 1000)
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
