"""Frame decoding and the sequence watch (pure)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from support import BTC, make_tx

from exporter.core.addresses import AddressBook
from exporter.core.detect import detect
from exporter.core.errors import DecodeError
from exporter.core.frames import (
    SequenceWatch,
    decode_frame,
    summary_values,
    well_formed,
    well_formed_blocks,
)

FEES = {"fastestFee": 3, "halfHourFee": 2, "hourFee": 2, "economyFee": 1, "minimumFee": 1}


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
        "block": {"id": "ab" * 32, "height": 5},
        "fees": FEES,
        "mempool-transactions": {"sequence": 7, "mined": ["cd"], "removed": [], "added": []},
        "loadingIndicators": {},
    }))  # fmt: skip
    assert frame.block == {"id": "ab" * 32, "height": 5}
    assert frame.errors == []
    assert frame.delta is not None and frame.delta.mined == ["cd"]
    assert sorted(frame.types) == ["block", "fees", "mempool_transactions", "other"]


def _whale() -> dict[str, Any]:
    return make_tx([("bc1qsomeone", 500 * BTC)])


def test_a_malformed_transaction_costs_only_itself() -> None:
    """A tx whose vin is a number, or whose input txid is a list, is skipped; the whale stays."""
    whale = _whale()
    vin_number = {**make_tx([("bc1qa", BTC)]), "vin": 7}
    txid_list = make_tx([("bc1qb", BTC)])
    txid_list["vin"][0]["txid"] = ["not", "a", "string"]
    frame = decode_frame(orjson.dumps({"mempool-transactions": {
        "sequence": 3, "added": [vin_number, whale, txid_list, 42, {"txid": ["x"]}],
        "removed": ["c" * 64, 5], "mined": [], "replaced": [{"replaced": ["x"], "by": whale}],
    }}))  # fmt: skip
    assert frame.delta is not None
    assert [tx["txid"] for tx in frame.delta.added] == [whale["txid"]]
    assert frame.delta.removed == ["c" * 64]
    assert frame.delta.sequence == 3
    assert [kind for kind, _ in frame.errors] == ["transaction"] * 6


@pytest.mark.parametrize(
    ("message", "rejected"),
    [
        ({"block": {"id": "ab" * 32, "height": 2**64 - 1}}, "block height"),
        ({"block": {"id": "ab" * 32, "height": 5, "timestamp": 1e30}}, "block timestamp"),
        ({"block": {"id": "not a hash", "height": 5}}, "block id"),
        ({"mempool-blocks": [{"blockVSize": 1e30, "nTx": 5, "medianFee": 2}]}, "blockVSize"),
        ({"mempool-blocks": [{"blockVSize": 9e5, "feeRange": [1, 2, 1e300]}]}, "feeRange"),
        ({"fees": {**FEES, "fastestFee": 1e20}}, "fastestFee"),
        ({"fees": {**FEES, "hourFee": -1}}, "hourFee"),
        ({"mempoolInfo": {"size": 2**62, "bytes": 5}}, "size"),
        ({"conversions": {"USD": 1e30}}, "USD"),
    ],
)
def test_absurd_numbers_are_rejected_where_decoded(message: dict[str, Any], rejected: str) -> None:
    """A number out of its sane range rejects its message; the rest of the frame stays."""
    whale = _whale()
    frame = decode_frame(
        orjson.dumps({**message, "mempool-transactions": {"sequence": 1, "added": [whale]}})
    )
    assert (frame.block, frame.mempool_blocks, frame.fees) == (None, None, None)
    assert (frame.mempool_info, frame.prices) == (None, None)
    assert len(frame.errors) == 1
    kind, reason = frame.errors[0]
    assert kind == "message" and rejected in reason
    assert frame.delta is not None and frame.delta.added == [whale]


def test_one_bad_block_in_a_list_costs_only_itself() -> None:
    """In `blocks`, an entry with an impossible height is skipped and the others are kept."""
    good = {"id": "ab" * 32, "height": 900_000, "timestamp": 1_750_000_000}
    frame = decode_frame(orjson.dumps({"blocks": [good, {"id": "cd" * 32, "height": -1}]}))
    assert frame.blocks == [good]
    assert [kind for kind, _ in frame.errors] == ["message"]


def test_an_impossible_sequence_keeps_the_transactions() -> None:
    """A sequence number out of range is dropped and counted; the transactions still count."""
    whale = _whale()
    frame = decode_frame(orjson.dumps({"mempool-transactions": {"sequence": -4, "added": [whale]}}))
    assert frame.delta is not None
    assert frame.delta.sequence is None and frame.delta.added == [whale]
    assert [kind for kind, _ in frame.errors] == ["message"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("vsize", 1e30), ("vsize", -4), ("effectiveFeePerVsize", 1e12), ("firstSeen", 2**40),
     ("adjustedFeePerVsize", "fast")],
)  # fmt: skip
def test_detection_rejects_absurd_transaction_numbers(field: str, value: Any) -> None:
    """A whale candidate with an absurd size, rate or time is rejected, never scored or stored."""
    tx = _whale()
    tx[field] = value
    with pytest.raises(DecodeError, match=field):
        detect(tx, AddressBook({}))


def test_a_number_beyond_a_double_costs_only_its_message() -> None:
    """`1e400` is valid JSON that orjson refuses; the frame is still read, the number rejected."""
    whale = _whale()
    raw = orjson.dumps({"mempool-transactions": {"sequence": 1, "added": [whale]}})
    raw = raw[:-1] + b',"fees":{"fastestFee":1e400}}'
    frame = decode_frame(raw)
    assert frame.delta is not None and frame.delta.added == [whale]
    assert frame.fees is None
    assert [kind for kind, _ in frame.errors] == ["message"]


def test_transactions_from_rest_are_shape_checked_one_by_one() -> None:
    """`well_formed` keeps the good transactions of a REST batch and says why each other failed."""
    whale = _whale()
    broken = {**make_tx([("bc1qa", BTC)]), "vin": [{"txid": {"x": 1}, "vout": 0}]}
    good, bad = well_formed([broken, whale, "nonsense"])
    assert good == [whale]
    assert len(bad) == 2 and "outpoint" in bad[0]


def test_blocks_from_rest_pass_the_stream_checks() -> None:
    """`well_formed_blocks` keeps what a `blocks` message would: no absurd height, no bad id."""
    good = {"id": "ab" * 32, "height": 900_000, "timestamp": 1_700_000_000}
    absurd = {"id": "cd" * 32, "height": 2**64 - 1}
    unnamed = {"id": "not a hash", "height": 900_001}
    assert well_formed_blocks([absurd, good, unnamed, 42]) == [good]


def test_block_summary_entries_pass_the_txid_and_value_checks() -> None:
    """A summary entry whose txid is no txid (a path, say) or whose value no transaction can
    hold is skipped, and the coinbase is left out; the rest keep their txid and value."""
    coinbase = {"txid": "00" * 32, "value": 312_500_000}
    whale = {"txid": "ab" * 32, "value": 250 * 10**8, "fee": 2_000}
    path = {"txid": "../../internal/x", "value": 500 * 10**8}
    absurd = {"txid": "cd" * 32, "value": 10**30}
    fractional = {"txid": "ef" * 32, "value": 1.5}
    entries = [coinbase, whale, path, absurd, fractional, "junk"]
    assert summary_values(entries) == [("ab" * 32, 250 * 10**8)]
