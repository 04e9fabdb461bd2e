"""Detection: value, self-change, flows, and malformed transactions."""

from __future__ import annotations

import pytest
from support import BTC, make_tx

from exporter.core.addresses import AddressBook
from exporter.core.detect import detect, gross_sats
from exporter.core.models import Flow
from exporter.errors import DecodeError

BOOK = AddressBook({"bc1qbinance": "Binance", "bc1qkraken": "Kraken", "bc1qbinance2": "Binance"})


def test_value_excludes_self_change() -> None:
    """Outputs paying back to an input address are change and do not count as value."""
    tx = make_tx([("bc1qdest", 60 * BTC), ("bc1qme", 90 * BTC)], [("bc1qme", 150 * BTC + 5000)])
    detection = detect(tx, BOOK)
    assert detection.value_sats == 60 * BTC
    assert detection.gross_sats == 150 * BTC


def test_value_is_gross_without_prevouts() -> None:
    """Without prevouts (bitcoind backend) the value is the sum of all outputs."""
    tx = make_tx([("bc1qdest", 60 * BTC), ("bc1qme", 90 * BTC)], [("bc1qme", 151 * BTC)],
                 prevouts=False)  # fmt: skip
    assert detect(tx, BOOK).value_sats == 150 * BTC


@pytest.mark.parametrize(
    ("outputs", "inputs", "flow", "entity"),
    [
        ([("bc1qbinance", 200 * BTC)], [("bc1qwhale", 200 * BTC + 5000)], Flow.INFLOW, "Binance"),
        ([("bc1qwhale", 200 * BTC)], [("bc1qkraken", 200 * BTC + 5000)], Flow.OUTFLOW, "Kraken"),
        ([("bc1qbinance2", 200 * BTC)], [("bc1qbinance", 2e10 + 5000)], Flow.INTERNAL, "Binance"),
        ([("bc1qbinance", 200 * BTC)], [("bc1qkraken", 2e10 + 5000)], Flow.INTERNAL,
         "Kraken → Binance"),
        ([("bc1qother", 200 * BTC)], [("bc1qwhale", 200 * BTC + 5000)], Flow.UNKNOWN, None),
    ],
)  # fmt: skip
def test_flows(
    outputs: list[tuple[str, int]],
    inputs: list[tuple[str, int]],
    flow: Flow,
    entity: str | None,
) -> None:
    """Each flow is recognised from exchange addresses on either side, with its entity."""
    inputs = [(address, int(value)) for address, value in inputs]
    detection = detect(make_tx(outputs, inputs), BOOK)
    assert (detection.flow, detection.entity) == (flow, entity)


HOT = "bc1qkraken"  # Kraken's listed hot wallet


@pytest.mark.parametrize(
    ("outputs", "inputs", "flow", "entity"),
    [
        # A withdrawal: the hot wallet pays a user and sends its change back to itself.
        ([("bc1quser", 150 * BTC), (HOT, 350 * BTC)], [(HOT, 500 * BTC + 5000)],
         Flow.OUTFLOW, "Kraken"),
        # A 500 BTC transfer between private wallets with a dust output to a deposit address.
        ([("bc1qprivate", 500 * BTC), ("bc1qbinance", 546)], [("bc1qwhale", 500 * BTC + 5546)],
         Flow.UNKNOWN, None),
        # Most of the value to a deposit address, the rest to another private address.
        ([("bc1qbinance", 300 * BTC), ("bc1qother", 200 * BTC)],
         [("bc1qwhale", 500 * BTC + 5000)], Flow.INFLOW, "Binance"),
        # Cold to hot: one entity's listed wallets, change excluded from the value.
        ([("bc1qbinance2", 200 * BTC), ("bc1qbinance", 800 * BTC)],
         [("bc1qbinance", 1000 * BTC + 5000)], Flow.INTERNAL, "Binance"),
        # A listed deposit funded partly by a listed input is neither in- nor outflow.
        ([("bc1qbinance", 300 * BTC)], [(HOT, 100 * BTC), ("bc1qwhale", 200 * BTC + 5000)],
         Flow.UNKNOWN, None),
    ],
)  # fmt: skip
def test_flow_follows_the_value(
    outputs: list[tuple[str, int]],
    inputs: list[tuple[str, int]],
    flow: Flow,
    entity: str | None,
) -> None:
    """The flow is read from the outputs that make the value (self-change excluded) and who pays."""
    detection = detect(make_tx(outputs, inputs), BOOK)
    assert (detection.flow, detection.entity) == (flow, entity)


def test_flow_without_prevouts_reads_outputs_only() -> None:
    """Without prevouts no input is known: most of the value to a listed address is an inflow."""
    tx = make_tx([("bc1qbinance", 300 * BTC), ("bc1qother", 10 * BTC)], prevouts=False)
    assert (detect(tx, BOOK).flow, detect(tx, BOOK).entity) == (Flow.INFLOW, "Binance")
    tx = make_tx([("bc1qbinance", 546), ("bc1qother", 300 * BTC)], prevouts=False)
    assert detect(tx, BOOK).flow is Flow.UNKNOWN


def test_bip125_signalling_is_recorded() -> None:
    """An input sequence below 0xfffffffe signals BIP125; a final sequence does not."""
    assert detect(make_tx([("a", BTC)], sequence=0), BOOK).bip125 is True
    assert detect(make_tx([("a", BTC)], sequence=0xFFFFFFFE), BOOK).bip125 is False


def test_fee_rate_prefers_effective_rate() -> None:
    """The CPFP-aware effectiveFeePerVsize is kept beside the transaction's own rate."""
    detection = detect(make_tx([("a", BTC)], fee=500, vsize=250, effective_rate=12.5), BOOK)
    assert detection.fee_rate == 2.0
    assert detection.effective_fee_rate == 12.5


def test_vsize_from_weight_when_missing() -> None:
    """Plain esplora has no vsize: it is ceil(weight / 4)."""
    tx = make_tx([("a", BTC)], fee=1000)
    del tx["vsize"], tx["feePerVsize"], tx["adjustedFeePerVsize"], tx["effectiveFeePerVsize"]
    tx["weight"] = 561
    detection = detect(tx, BOOK)
    assert detection.vsize == 141
    assert detection.fee_rate == round(1000 / 141, 3)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda tx: tx.pop("txid"), "txid"),
        (lambda tx: tx.update(txid="xyz"), "txid"),
        (lambda tx: tx["vout"][0].update(value=-1), "impossible"),
        (lambda tx: tx["vout"][0].update(value=21_000_001 * BTC), "21M"),
        (lambda tx: tx["vout"].append({"value": 20_999_999 * BTC}), "21M"),
        (lambda tx: tx["vout"][0].update(value="100"), "integer"),
        (lambda tx: tx.update(vout=None), "vout"),
        (lambda tx: tx.update(vin="x"), "vin"),
    ],
)
def test_malformed_transactions_raise_decode_error(mutate: object, message: str) -> None:
    """Missing txids, negative or impossible values and broken shapes raise DecodeError."""
    tx = make_tx([("a", 10 * BTC)])
    mutate(tx)  # type: ignore[operator]
    with pytest.raises(DecodeError, match=message):
        detect(tx, BOOK)


def test_gross_rejects_non_objects() -> None:
    """A transaction that is not a JSON object is a DecodeError, not a crash."""
    with pytest.raises(DecodeError):
        gross_sats(["not", "a", "tx"])
