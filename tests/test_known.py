"""The compact known-txid set: membership through stream changes, merges and rebuilds."""

from __future__ import annotations

from support import txid

from exporter.core.frames import MempoolDelta
from exporter.core.known import KnownTxids, prefix, scan_txids, sorted_keys


def test_stream_changes_keep_the_set_true() -> None:
    """Added and replacing txids join; removed, mined and replaced ones leave."""
    known = KnownTxids()
    a, b, c, d = (txid() for _ in range(4))
    known.apply(MempoolDelta(1, added=[{"txid": a}, {"txid": b}, {"txid": c}]))
    assert {a, b, c} <= {t for t in (a, b, c) if t in known}
    known.apply(MempoolDelta(2, added=[{"txid": d}], replaced=[(a, {"txid": d})], removed=[b]))
    assert a not in known and b not in known and d in known and c in known
    known.apply(MempoolDelta(3, mined=[c, d]))
    assert len(known) == 0 and c not in known and d not in known


def test_merges_keep_membership_exact() -> None:
    """Folding the change sets into the sorted bulk changes no answer."""
    known = KnownTxids(merge_at=8)
    ids = [txid() for _ in range(200)]
    for t in ids:
        known.add(t)
    for t in ids[::3]:
        known.discard(t)
    known.add(ids[0])  # back again after leaving
    expected = {t for i, t in enumerate(ids) if i % 3 or i == 0}
    assert {t for t in ids if t in known} == expected
    known.merge()
    assert {t for t in ids if t in known} == expected
    assert len(known) == len(expected)


def test_rebuild_replays_changes_made_meanwhile() -> None:
    """A txid the stream adds or removes while the list is read is not lost by the rebuild."""
    known = KnownTxids()
    listed, late, gone = txid(), txid(), txid()
    known.begin_rebuild()
    known.add(late)  # arrived after the list was taken
    known.discard(gone)
    bulk = sorted_keys(prefix(t) for t in (listed, gone))
    known.finish_rebuild(bulk)
    assert listed in known and late in known and gone not in known


def test_sorted_keys_sorts_and_dedups_across_chunks() -> None:
    """Keys come out sorted and unique however they are chunked."""
    keys = [(i * 7919) % 100_003 for i in range(150_000)]
    out = sorted_keys(keys)
    assert list(out) == sorted(set(keys))


def test_scan_txids_reads_a_list_cut_anywhere() -> None:
    """Txids split across chunk borders are read whole; junk is ignored, never raised."""
    ids = [txid() for _ in range(50)]
    body = ('["' + '","'.join(ids) + '"]').encode()
    chunks = [body[i : i + 37] for i in range(0, len(body), 37)]
    assert list(scan_txids(chunks)) == ids
    assert list(scan_txids([b'{"error": "nope"}'])) == []


def test_non_hex_txids_are_never_known() -> None:
    """A malformed txid neither raises nor joins the set."""
    known = KnownTxids()
    known.add("not-a-txid")
    assert "not-a-txid" not in known and len(known) == 0
    assert 42 not in known


def test_a_txid_in_the_list_and_added_meanwhile_is_one_member() -> None:
    """A txid both in the new list and added by the stream during the rebuild is one member
    once merged, and leaves with a single removal."""
    known = KnownTxids()
    both = txid()
    known.begin_rebuild()
    known.add(both)
    known.finish_rebuild(sorted_keys([prefix(both)]))
    known.merge()
    assert len(known) == 1
    known.discard(both)
    assert both not in known and len(known) == 0
