"""Routing rules: parsing the rules file and deciding per tag (exporter.notify.rules)."""

from __future__ import annotations

from typing import Any

import pytest
from support import make_signal

from exporter.core.models import Event, EventKind, Flow, Signal, Status, Urgency
from exporter.notify.rules import (
    Notice,
    NoticeKind,
    Rule,
    Rules,
    Verdict,
    decide,
    notice_for,
    parse_rules,
)

TXID = "cd" * 32


def whale(btc: float = 200.0, **changes: object) -> Signal:
    values: dict[str, object] = {
        "detected_at": 1.0,
        "first_seen": 1.0,
        "fee_sats": 1_000,
        "vsize": 200.0,
        "fee_rate": 5.0,
        "effective_fee_rate": 5.0,
        "entity": "Kraken",
        "bip125": False,
        "urgency_level": Urgency.MEDIUM,
    }
    return make_signal(TXID, btc, **{**values, **changes})


RULES = """
traders:
  min_btc: 500
  min_usd: 30000000
  flows: [inflow, outflow]
  min_urgency: high
  follow_ups: [confirmed, replaced]
default: {}
"*":
  min_btc: 1000
"""


def test_parse_reads_every_key() -> None:
    """Every documented key of a rule is read, and `*` becomes the fallback."""
    rules = parse_rules(RULES)
    traders = rules.rule("traders")
    assert traders == Rule(
        min_btc=500,
        min_usd=30_000_000,
        flows=frozenset({Flow.INFLOW, Flow.OUTFLOW}),
        min_urgency=Urgency.HIGH,
        follow_ups=frozenset({NoticeKind.CONFIRMED, NoticeKind.REPLACED}),
    )
    assert rules.rule("default") == Rule()
    assert rules.rule("desk") == Rule(min_btc=1000)


def test_parse_reports_every_problem_at_once() -> None:
    """Unknown keys and bad values are all named in one error."""
    text = "traders:\n  min_btc: -1\n  flows: [sideways]\n  min_urgency: extreme\n  colour: red\n"
    with pytest.raises(ValueError) as info:
        parse_rules(text, "rules.yml")
    lines = str(info.value).splitlines()
    assert len(lines) == 4
    assert all(line.startswith("rules.yml: traders:") for line in lines)


def test_parse_rejects_a_list_at_the_top() -> None:
    """The file must map tags to rules."""
    with pytest.raises(ValueError, match="must map Apprise tags"):
        parse_rules("- traders\n")


def test_default_rules_send_every_new_whale_but_not_to_oncall() -> None:
    """Without a rules file every tag gets new whales except the on-call tag."""
    rules = Rules.default()
    assert rules.rule("traders") == Rule()
    assert rules.rule("default") == Rule()
    assert rules.rule("oncall") is None


def test_rule_checks_btc_usd_flow_and_urgency() -> None:
    """Each condition of a rule can reject a whale on its own."""
    rule = Rule(min_btc=500, min_usd=1e6, flows=frozenset({Flow.INFLOW}), min_urgency=Urgency.HIGH)
    big = {"urgency_level": Urgency.HIGH, "value_usd": 5e7}
    assert rule.accepts(whale(600, **big))
    assert not rule.accepts(whale(400, **big))
    assert not rule.accepts(whale(600, urgency_level=Urgency.HIGH, value_usd=5e5))
    assert not rule.accepts(whale(600, **big, flow=Flow.OUTFLOW))
    assert not rule.accepts(whale(600, urgency_level=Urgency.MEDIUM, value_usd=5e7))


def test_min_usd_is_skipped_while_the_price_is_unknown() -> None:
    """A whale without a USD value is not held back by min_usd."""
    assert Rule(min_usd=1e9).accepts(whale(value_usd=None))


def test_events_map_to_notices() -> None:
    """Each event kind and outcome maps to its notice kind and dedup key part."""
    cases: list[tuple[EventKind, dict[str, Any], NoticeKind, str]] = [
        (EventKind.DETECTED, {}, NoticeKind.NEW, ""),
        (EventKind.REPLACED, {"txid": "ef" * 32}, NoticeKind.REPLACED, "ef" * 32),
        (EventKind.RESOLVED, {"status": Status.CONFIRMED}, NoticeKind.CONFIRMED, ""),
        (
            EventKind.RESOLVED,
            {"status": Status.REPLACED, "block_height": 5},
            NoticeKind.CONFIRMED,
            "",
        ),
        (
            EventKind.RESOLVED,
            {"status": Status.REPLACED, "replaced_out": True},
            NoticeKind.REPLACED,
            "final",
        ),
        (EventKind.RESOLVED, {"status": Status.DROPPED}, NoticeKind.DROPPED, ""),
        (EventKind.RESOLVED, {"status": Status.EXPIRED}, NoticeKind.EXPIRED, ""),
    ]
    for kind, changes, expected, key in cases:
        notice = notice_for(Event(kind, whale(**changes)))
        assert notice is not None
        assert (notice.kind, notice.key) == (expected, key)


def test_replaced_out_event_waits_for_its_resolution() -> None:
    """A whale replaced below the threshold is told once, by the RESOLVED event that follows."""
    assert notice_for(Event(EventKind.REPLACED, whale(replaced_out=True))) is None


def test_follow_ups_only_reach_tags_that_heard_of_the_whale() -> None:
    """A follow-up is skipped where the new whale was not sent, filtered where not wanted."""
    notice = Notice(NoticeKind.CONFIRMED, whale())
    wanted = Rule(follow_ups=frozenset({NoticeKind.CONFIRMED}))
    assert decide(wanted, notice, new_was_sent=False) is Verdict.SKIP
    assert decide(wanted, notice, new_was_sent=True) is Verdict.SEND
    assert decide(Rule(), notice, new_was_sent=True) is Verdict.FILTER
    assert decide(None, notice, new_was_sent=True) is Verdict.SKIP


def test_new_whale_below_the_rule_is_filtered() -> None:
    """A new whale the rule rejects is counted as filtered."""
    notice = Notice(NoticeKind.NEW, whale(200))
    assert decide(Rule(min_btc=500), notice, new_was_sent=False) is Verdict.FILTER
    assert decide(Rule(min_btc=100), notice, new_was_sent=False) is Verdict.SEND
