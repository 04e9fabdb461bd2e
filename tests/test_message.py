"""Titles and bodies of whale notifications (exporter.notify.message)."""

from __future__ import annotations

from support import make_signal

from exporter.core.models import Flow, Signal, Status, Urgency
from exporter.notify import message
from exporter.notify.rules import Notice, NoticeKind

TXID = "ab" * 32


def whale(**changes: object) -> Signal:
    values: dict[str, object] = {
        "value_sats": 123_450_000_000,
        "gross_sats": 123_460_000_000,
        "effective_fee_rate": 62.5,
        "urgency_score": 0.87,
        "urgency_level": Urgency.HIGH,
        "urgency_fallback": False,
        "predicted_blocks": 1,
        "value_usd": 98_765_432.0,
    }
    return make_signal(TXID, 0, **{**values, **changes})


def link(txid: str) -> str:
    return f"https://mempool.space/tx/{txid}"


def test_btc_formats_thousands_and_drops_trailing_zeros() -> None:
    """BTC amounts show a thousands separator and at most two decimals."""
    assert message.btc(123_450_000_000) == "1,234.5"
    assert message.btc(10_000_000_000) == "100"
    assert message.btc(123_456_789_012) == "1,234.57"


def test_title_of_an_inflow_names_the_entity_after_the_arrow() -> None:
    """An inflow reads `🐋 1,234.5 BTC → Binance (inflow)`."""
    assert message.title(Notice(NoticeKind.NEW, whale())) == "🐋 1,234.5 BTC → Binance (inflow)"


def test_title_of_an_outflow_puts_the_entity_first() -> None:
    """An outflow reads `🐋 Binance → 1,234.5 BTC (outflow)`."""
    notice = Notice(NoticeKind.NEW, whale(flow=Flow.OUTFLOW))
    assert message.title(notice) == "🐋 Binance → 1,234.5 BTC (outflow)"


def test_title_of_an_unknown_flow_has_no_entity() -> None:
    """A whale between unknown addresses shows only its value."""
    notice = Notice(NoticeKind.NEW, whale(flow=Flow.UNKNOWN, entity=None))
    assert message.title(notice) == "🐋 1,234.5 BTC"


def test_a_whale_found_in_a_block_says_it_was_never_seen_in_the_mempool() -> None:
    """An audit whale's title and body say it confirmed without a mempool sighting."""
    signal = whale(status=Status.CONFIRMED, block_height=870_000, seen_in_mempool=False)
    notice = Notice(NoticeKind.NEW, signal)
    assert message.title(notice) == (
        "🐋 Confirmed without a mempool sighting: 1,234.5 BTC → Binance (inflow)"
    )
    assert "never seen in the mempool" in message.body(notice, link)
    assert "870,000" in message.body(notice, link)


def test_follow_up_title_says_what_happened() -> None:
    """A confirmation follow-up is labelled as such."""
    notice = Notice(NoticeKind.CONFIRMED, whale(status=Status.CONFIRMED, block_height=870_000))
    assert message.title(notice) == "✅ Confirmed: 1,234.5 BTC → Binance (inflow)"


def test_body_holds_every_fact_and_the_explorer_link() -> None:
    """The body lists value and USD, flow, fee rates, urgency, prediction, BIP125, txid, link."""
    body = message.body(Notice(NoticeKind.NEW, whale()), link)
    for part in (
        "1,234.5 BTC (≈ $98,765,432)",
        "inflow to Binance",
        "50.0 sat/vB (effective 62.5 sat/vB)",
        "high (score 0.87)",
        "next block",
        "**RBF (BIP125):** signalled",
        f"`{TXID}`",
        f"[View transaction](https://mempool.space/tx/{TXID})",
    ):
        assert part in body


def test_body_without_usd_or_prediction_says_unknown() -> None:
    """Missing USD is left out and a missing prediction reads unknown."""
    body = message.body(Notice(NoticeKind.NEW, whale(value_usd=None, predicted_blocks=None)), link)
    assert "$" not in body
    assert "**Predicted confirmation:** unknown" in body


def test_entity_markdown_is_escaped_in_the_body() -> None:
    """An entity name with Markdown characters cannot break the formatting."""
    body = message.body(Notice(NoticeKind.NEW, whale(entity="OK_Ex*")), link)
    assert r"OK\_Ex\*" in body


def test_confirmed_body_reports_block_and_wait_against_prediction() -> None:
    """A confirmation names its block and compares blocks waited with the prediction."""
    signal = whale(status=Status.CONFIRMED, block_height=870_002, tip_height=870_000)
    body = message.body(Notice(NoticeKind.CONFIRMED, signal), link)
    assert "**Confirmed** in block 870,002 after 2 blocks (predicted 1 block)" in body


def test_digest_counts_and_lists_the_folded_alerts() -> None:
    """A digest title counts the folded alerts and its body lists one line each."""
    lines = [message.line(Notice(NoticeKind.NEW, whale()), link)] * 3
    digest = message.digest(lines, limit=10, window=60)
    assert digest.title == "🐋 Digest: 3 more whale alerts"
    assert "More than 10 alerts in one minute" in digest.body
    assert digest.body.count("- 🐋 1,234.5 BTC → Binance (inflow)") == 3
