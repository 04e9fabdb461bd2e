"""Signed webhooks against a real local receiver that checks every signature itself."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import StartExporter
from prometheus_client import generate_latest
from pydantic import SecretStr
from support import BTC, make_signal, running, short_backoff, sim_whale, wait_for

from exporter.config import Settings
from exporter.core.models import Event, EventKind, Status, Urgency
from exporter.metrics import Metrics
from exporter.notify import webhook
from exporter.notify.notifier import Notifier
from exporter.shell.store import Store
from exporter.sim.mempool import SimulatedMempool
from exporter.sim.receiver import Receiver, Request

KEY = "whsec-0123456789abcdef"
PATH_TOKEN = "PathT0kenQWERTY"


def txid(n: int) -> str:
    return f"{n:064x}"


def detected(n: int, btc: float = 1234.5) -> Event:
    signal = make_signal(txid(n), btc, urgency_level=Urgency.HIGH, urgency_score=0.9)
    return Event(EventKind.DETECTED, signal)


class Bot:
    """A bot's endpoint: verifies the signature the way docs/bots.md shows, 401 when wrong."""

    def __init__(self, key: str, status: int = 200) -> None:
        self.key = key.encode()
        self.status = status
        self.verified: list[dict[str, Any]] = []
        self.rejected = 0

    async def __call__(self, request: Request) -> int:
        stamp = request.headers.get("x-whale-timestamp", "")
        given = request.headers.get("x-whale-signature", "")
        signed = stamp.encode() + b"." + request.body
        expected = "sha256=" + hmac.new(self.key, signed, hashlib.sha256).hexdigest()
        fresh = stamp.isdigit() and abs(time.time() - int(stamp)) < 300
        if not (fresh and hmac.compare_digest(expected, given)):
            self.rejected += 1
            return 401
        if self.status < 300:
            self.verified.append(json.loads(request.body))
        return self.status


def settings(*urls: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "webhook_urls": tuple(SecretStr(url) for url in urls),
        "webhook_secret": SecretStr(KEY),
        "notify_retries": 2,
        "notify_timeout": 5.0,
    }
    return Settings(**{**values, **changes})


async def rows(store: Store, sql: str) -> list[tuple[Any, ...]]:
    def query(cursor: Any) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in cursor.execute(sql).fetchall()]

    return await store.read(query)


async def test_each_whale_is_posted_signed_and_verifies(store: Store, metrics: Metrics) -> None:
    """A whale event arrives as JSON whose HMAC signature over "<timestamp>.<body>" verifies."""
    bot = Bot(KEY)
    async with Receiver(respond=bot) as receiver:
        url = f"http://127.0.0.1:{receiver.port}/hooks/{PATH_TOKEN}"
        async with running(Notifier(settings(url), metrics, store)) as notifier:
            notifier.submit(detected(1))
            confirmed = make_signal(txid(1), 1234.5, status=Status.CONFIRMED, block_height=870_000)
            notifier.submit(Event(EventKind.RESOLVED, confirmed))  # no follow-ups by default
            await wait_for(lambda: bot.verified != [], what="a verified webhook")
    [request] = receiver.received
    assert request.method == "POST" and request.path == f"/hooks/{PATH_TOKEN}"
    assert request.headers["content-type"] == "application/json"
    [body] = bot.verified
    assert body["kind"] == "new" and body["count"] == 1
    assert [(e["kind"], e["whale"]["txid"]) for e in body["events"]] == [("new", txid(1))]
    assert body["events"][0]["whale"]["value_btc"] == 1234.5
    assert bot.rejected == 0
    assert metrics.registry.get_sample_value("whale_notifications_sent_total") == 1
    assert await rows(store, "SELECT tag, kind, result FROM deliveries") == [
        ("webhook", "new", "sent")
    ]


async def test_a_wrong_secret_is_rejected_and_not_retried(store: Store, metrics: Metrics) -> None:
    """A receiver holding another key rejects the signature (401); a 4xx is recorded, not retried,
    and the destination stays up for the next alert."""
    bot = Bot("another-secret-of-the-bot")
    async with Receiver(respond=bot) as receiver:
        notifier = Notifier(
            settings(receiver.url("/hook", "http")), metrics, store, delay=short_backoff
        )
        async with running(notifier):
            notifier.submit(detected(1))
            await wait_for(lambda: bot.rejected == 1, what="the rejection")
            notifier.submit(detected(2))
            await wait_for(lambda: bot.rejected == 2, what="the second rejection")
    assert len(receiver.received) == 2
    assert await rows(store, "SELECT txid, attempt, result, error FROM deliveries") == [
        (txid(1), 1, "failed", "HTTP 401"),
        (txid(2), 1, "failed", "HTTP 401"),
    ]
    up = metrics.registry.get_sample_value(
        "whale_notification_destination_up", {"destination": "webhook#0"}
    )
    assert up == 1


async def test_webhooks_follow_the_rules_and_dedup(
    tmp_path: Path, store: Store, metrics: Metrics
) -> None:
    """The `webhook` tag's rule filters and asks for follow-ups; a repeated event is not resent."""
    rules = tmp_path / "rules.yml"
    rules.write_text("webhook:\n  min_btc: 1000\n  follow_ups: [confirmed]\n")
    bot = Bot(KEY)
    async with Receiver(respond=bot) as receiver:
        notifier = Notifier(
            settings(receiver.url("/hook", "http"), alert_rules=rules), metrics, store
        )
        async with running(notifier):
            notifier.submit(detected(1, btc=500))  # below the rule
            notifier.submit(detected(2))
            notifier.submit(detected(2))  # the same news again
            confirmed = make_signal(txid(2), 1234.5, status=Status.CONFIRMED, block_height=870_001)
            notifier.submit(Event(EventKind.RESOLVED, confirmed))
            await wait_for(lambda: len(bot.verified) == 2, what="the whale and its confirmation")
    assert [(b["kind"], b["events"][0]["whale"]["txid"]) for b in bot.verified] == [
        ("new", txid(2)),
        ("confirmed", txid(2)),
    ]
    suppressed = metrics.registry.get_sample_value
    assert suppressed("whale_notifications_suppressed_total", {"reason": "filter"}) == 1
    assert suppressed("whale_notifications_suppressed_total", {"reason": "dedup"}) == 1


async def test_a_webhook_that_was_down_gets_one_signed_digest(
    store: Store, metrics: Metrics
) -> None:
    """Through an outage (500s) a webhook's whales are held and posted as one signed digest
    listing every event; retries re-sign with a fresh timestamp."""
    bot = Bot(KEY, status=500)
    async with Receiver(respond=bot) as receiver:
        notifier = Notifier(
            settings(receiver.url("/hook", "http")), metrics, store, delay=short_backoff
        )
        async with running(notifier):
            for n in range(1, 5):
                notifier.submit(detected(n))
            await wait_for(lambda: len(receiver.received) >= 4, what="retries and a probe")
            bot.status = 200
            await wait_for(lambda: bot.verified != [], what="the digest")
    [digest] = bot.verified
    assert (digest["kind"], digest["reason"], digest["count"]) == ("digest", "outage", 4)
    assert sorted(e["whale"]["txid"] for e in digest["events"]) == [txid(n) for n in range(1, 5)]
    assert bot.rejected == 0  # every attempt, retries included, carried a valid signature


async def test_a_webhook_down_at_shutdown_gets_its_whales_signed_after_the_next_start(
    store: Store, metrics: Metrics
) -> None:
    """Whales a webhook had not taken when the notifier stopped are posted by the next run, as
    one signed digest whose events carry the same whale objects the first run would have sent."""
    bot = Bot(KEY, status=500)
    async with Receiver(respond=bot) as receiver:
        hook = settings(receiver.url("/hook", "http"))
        first = Notifier(hook, metrics, store, delay=short_backoff)
        async with running(first, timeout=0.2):
            for n in range(1, 4):
                first.submit(detected(n, btc=100.0 * n))
            await wait_for(lambda: len(receiver.received) >= 3, what="retries and a probe")
        bot.status = 200
        async with running(Notifier(hook, metrics, store, delay=short_backoff)):
            await wait_for(lambda: bot.verified != [], what="the carried-over digest")
    [digest] = bot.verified
    assert (digest["kind"], digest["reason"], digest["count"]) == ("digest", "outage", 3)
    expected = [dict(webhook.plain_json(detected(n, btc=100.0 * n).signal)) for n in (1, 2, 3)]
    assert sorted((e["whale"] for e in digest["events"]), key=lambda w: w["txid"]) == expected
    assert bot.rejected == 0


async def test_webhook_url_and_secret_never_leak(
    store: Store, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither the URL token nor the key shows in logs (httpx at DEBUG too), records, metrics."""
    caplog.set_level(logging.DEBUG)
    bot = Bot(KEY, status=500)
    async with Receiver(respond=bot) as receiver:
        url = f"http://127.0.0.1:{receiver.port}/hooks/{PATH_TOKEN}?token={PATH_TOKEN}x"
        notifier = Notifier(settings(url, notify_retries=1), metrics, store, delay=short_backoff)
        async with running(notifier):
            logging.getLogger("httpx").setLevel(logging.DEBUG)
            notifier.submit(detected(1))
            await wait_for(lambda: len(receiver.received) >= 3, what="failed attempts")
            bot.status = 200
            await wait_for(lambda: bot.verified != [], what="the recovery")
        logging.getLogger("httpx").setLevel(logging.NOTSET)
    recorded = await rows(store, "SELECT * FROM deliveries")
    exposed = generate_latest(metrics.registry).decode()
    assert "webhook#0" in exposed and "is down" in caplog.text and "HTTP Request" in caplog.text
    for text in (caplog.text, repr(recorded), exposed):
        assert PATH_TOKEN not in text
        assert KEY not in text


async def test_the_exporter_posts_a_streamed_whale_in_the_api_shape(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """End to end: a whale in the simulated stream reaches a bot as a signed webhook whose whale
    is the same JSON as GET /api/v1/whales serves."""
    bot = Bot(KEY)
    async with Receiver(respond=bot) as receiver:
        exporter = await start_exporter(
            sim.url, webhook_urls=[receiver.url("/hook", "http")], webhook_secret=KEY
        )
        tx = sim_whale(sim, 400)
        sim.add(tx)
        await sim.wait_until(lambda s: s.connections >= 1)
        await sim.flush()
        await wait_for(lambda: bot.verified != [], what="the signed webhook")
        [served] = await exporter.whales()
    [body] = bot.verified
    [event] = body["events"]
    assert event["kind"] == "new" and event["whale"]["txid"] == tx["txid"]
    assert event["whale"] == served  # the API's shape, explorer link included
    assert event["whale"]["value_btc"] == 400 * BTC / 1e8


def test_sign_matches_an_independent_hmac_and_verify_refuses_tampering() -> None:
    """sign() is HMAC-SHA256 of "<timestamp>.<body>"; verify() refuses a changed body or stamp."""
    body = b'{"kind":"new"}'
    mac = hmac.new(KEY.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert webhook.sign(KEY.encode(), 1700000000, body) == f"sha256={mac}"
    signature = webhook.sign(KEY.encode(), 1700000000, body)
    assert webhook.verify(KEY.encode(), "1700000000", signature, body)
    assert not webhook.verify(KEY.encode(), "1700000001", signature, body)
    assert not webhook.verify(KEY.encode(), "1700000000", signature, body + b" ")
    assert not webhook.verify(b"other", "1700000000", signature, body)
