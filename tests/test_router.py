"""The pure router: rules, dedup, rate windows and digests, driven by a fake clock (no loop)."""

from __future__ import annotations

from typing import Any

from support import make_signal

from exporter.core.models import Event, EventKind, Signal, Status, Urgency
from exporter.notify.router import PRUNE_EVERY, Router, Send
from exporter.notify.rules import Rule, Rules, parse_rules

DAY = 86_400.0


def link(txid: str) -> str:
    return f"https://mempool.example/tx/{txid}"


def whale(n: int, **changes: Any) -> Signal:
    values: dict[str, Any] = {"urgency_level": Urgency.HIGH, "urgency_score": 0.9}
    return make_signal(f"{n:064x}", 1234.5, **{**values, **changes})


def detected(n: int, **changes: Any) -> Event:
    return Event(EventKind.DETECTED, whale(n, **changes))


def router(
    routes: dict[str, list[str]] | None = None,
    rules: Rules | None = None,
    limit: int = 10,
    keep: float = 90 * DAY,
    max_keys: int = 1_000,
) -> Router:
    return Router(
        rules or Rules.default(),
        routes or {"default": ["json#0"]},
        link=link,
        limit=limit,
        window=60.0,
        keep=keep,
        max_keys=max_keys,
    )


def targets(sends: list[Send]) -> list[tuple[str, tuple[str, ...]]]:
    return [(send.out.kind, send.destinations) for send in sends]


def test_a_whale_is_sent_once_and_its_key_claimed() -> None:
    """The first event sends and claims a key; the same whale again is suppressed as dedup."""
    r = router()
    first = r.route(detected(1), now=100.0)
    again = r.route(detected(1), now=101.0)
    assert targets(first.sends) == [("new", ("json#0",))]
    assert [(c.key, c.at) for c in first.claims] == [(f"default|new|{1:064x}|", 100.0)]
    assert again.sends == [] and again.claims == []
    assert again.suppressed == {"dedup": 1}


def test_a_replacement_is_not_a_second_new_whale() -> None:
    """A detected replacement whose chain holds a whale already sent is a duplicate."""
    r = router()
    r.route(detected(1), now=0.0)
    replacement = whale(2, chain_id=f"{1:064x}", chain=[f"{1:064x}", f"{2:064x}"])
    decision = r.route(Event(EventKind.DETECTED, replacement), now=1.0)
    assert decision.sends == [] and decision.suppressed == {"dedup": 1}


def test_a_destination_with_two_tags_hears_once() -> None:
    """A destination listed under two tags gets one message; each tag still claims its key."""
    r = router({"desk": ["json#0", "json#1"], "traders": ["json#1"]})
    decision = r.route(detected(1), now=0.0)
    assert targets(decision.sends) == [("new", ("json#0", "json#1"))]
    assert len(decision.claims) == 2


def test_follow_ups_go_only_where_asked_and_where_the_whale_was_told() -> None:
    """A confirmation reaches the tag that asked for it and heard of the whale, no other."""
    rules = parse_rules("desk:\n  follow_ups: [confirmed]\nbig:\n  min_btc: 5000\n")
    r = router({"desk": ["a#0"], "big": ["b#1"]}, rules)
    new = r.route(detected(1), now=0.0)
    confirmed = whale(1, status=Status.CONFIRMED, block_height=870_000)
    follow = r.route(Event(EventKind.RESOLVED, confirmed), now=5.0)
    assert targets(new.sends) == [("new", ("a#0",))]
    assert new.suppressed == {"filter": 1}
    assert targets(follow.sends) == [("confirmed", ("a#0",))]
    assert follow.suppressed == {}  # big never heard of the whale: nothing to say


def test_over_the_limit_alerts_fold_into_one_digest_due_when_the_window_ends() -> None:
    """Past `limit` alerts in a window, the rest fold into one digest, due at the window's end."""
    r = router(limit=2)
    sends = [s for n in range(1, 6) for s in r.route(detected(n), now=float(n)).sends]
    assert targets(sends) == [("new", ("json#0",))] * 2
    assert r.next_due() == 61.0
    assert r.due(60.9) == []
    [digest] = r.due(61.0)
    assert digest.destinations == ("json#0",)
    assert (digest.out.kind, digest.out.count, digest.out.reason) == ("digest", 3, "rate_limit")
    assert [item[1] for item in digest.out.items] == [f"{n:064x}" for n in (3, 4, 5)]
    assert digest.out.title == "🐋 Digest: 3 more whale alerts"
    assert r.next_due() is None


def test_a_new_window_opens_after_the_old_one_and_sends_its_digest_first() -> None:
    """An event after the window sends the old window's digest, then itself."""
    r = router(limit=1)
    r.route(detected(1), now=0.0)
    r.route(detected(2), now=1.0)
    decision = r.route(detected(3), now=70.0)
    assert targets(decision.sends) == [("digest", ("json#0",)), ("new", ("json#0",))]


def test_flush_sends_a_digest_before_its_window_ends() -> None:
    """At shutdown, flush() hands over every folded alert even though no window has ended."""
    r = router(limit=1)
    r.route(detected(1), now=0.0)
    r.route(detected(2), now=1.0)
    [digest] = r.flush(now=2.0)
    assert digest.out.count == 1
    assert r.flush(now=3.0) == []


def test_dedup_keys_are_forgotten_with_retention() -> None:
    """Keys older than `keep` are dropped (memory stays bounded), as the store's retention does."""
    r = router(keep=DAY)
    for n in range(100):
        r.route(detected(n), now=float(n))
    assert r.key_count == 100
    r.route(detected(1000), now=DAY + 49.5)  # an hour has passed since the last sweep
    assert r.key_count == 51  # whales 50..99 and 1000; 0..49 are past retention
    assert r.route(detected(10), now=DAY + 50.0).sends != []  # forgotten: may be told again
    assert r.route(detected(60), now=DAY + 51.0).suppressed == {"dedup": 1}


def test_keys_are_swept_hourly_not_on_every_event() -> None:
    """Sweeps run at most once per PRUNE_EVERY seconds, so routing stays cheap."""
    r = router(keep=10.0)
    r.route(detected(1), now=0.0)
    r.route(detected(2), now=20.0)  # past retention for whale 1, but no sweep is due yet
    assert r.key_count == 2
    r.route(detected(3), now=PRUNE_EVERY + 1.0)
    assert r.key_count == 1


def test_a_flood_of_whales_holds_at_most_max_keys_forgetting_the_oldest() -> None:
    """Within retention, the key count still stops at `max_keys`: the oldest are forgotten
    first, when routing and when loading."""
    r = router(limit=1_000, max_keys=50)
    for n in range(80):
        r.route(detected(n), now=float(n))
    assert r.key_count == 50
    assert r.route(detected(79), now=81.0).suppressed == {"dedup": 1}  # the newest are kept
    assert r.route(detected(0), now=82.0).sends != []  # the oldest was forgotten
    loaded = router(max_keys=2)
    loaded.load([(f"default|new|{n:064x}|", float(n)) for n in range(5)], now=10.0)
    assert loaded.key_count == 2 and loaded.route(detected(0), now=11.0).sends != []


def test_loaded_keys_past_retention_are_dropped() -> None:
    """Keys loaded from the store that retention would delete are not held."""
    r = router(keep=DAY)
    r.load([("default|new|a|", 0.0), ("default|new|b|", DAY)], now=DAY + 10.0)
    assert r.key_count == 1


def test_rule_filters_count_as_filter() -> None:
    """A whale below a tag's minimum is counted as filtered, never sent."""
    rules = Rules({"traders": Rule(min_btc=5000)}, None)
    decision = router({"traders": ["a#0"]}, rules).route(detected(1), now=0.0)
    assert decision.sends == [] and decision.suppressed == {"filter": 1}
