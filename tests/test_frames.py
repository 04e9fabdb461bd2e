"""Frame decoding and the sequence watch (pure)."""

from __future__ import annotations

import orjson

from exporter.core.frames import SequenceWatch, decode_frame


def test_sequence_watch() -> None:
    """Same number = out of sync, +1 = fine, a jump = gap, a drop = backend restart."""
    watch = SequenceWatch()
    assert [watch.observe(n) for n in (10, 11, 11, 11, 12, 15, 3, None)] == [
        "first", "ok", "stalled", "stalled", "ok", "gap", "reset", "ok"]  # fmt: skip
    watch.reset()
    assert watch.observe(99) == "first"


def test_one_frame_carries_several_messages() -> None:
    """A block frame carries block, mempool-transactions and fees together."""
    frame = decode_frame(orjson.dumps({
        "block": {"id": "ab", "height": 5}, "fees": {"fastestFee": 3},
        "mempool-transactions": {"sequence": 7, "mined": ["cd"], "removed": [], "added": []},
        "loadingIndicators": {},
    }))  # fmt: skip
    assert frame.block == {"id": "ab", "height": 5}
    assert frame.delta is not None and frame.delta.mined == ["cd"]
    assert sorted(frame.types) == ["block", "fees", "mempool_transactions", "other"]
