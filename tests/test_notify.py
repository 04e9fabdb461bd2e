"""The notifier against real Apprise, a local JSON receiver, aiosmtpd and DuckDB."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import SecretStr
from support import config_file, make_signal, running

from exporter.config import Settings
from exporter.core.models import Event, EventKind, Flow, Signal, Status, Urgency
from exporter.errors import ConfigError
from exporter.metrics import Metrics
from exporter.notify.notifier import Notifier, Outgoing
from exporter.redact import Redactor, url_secrets
from exporter.shell.store import Store
from exporter.sim.receiver import Receiver, Request

SECRET = "Tk9SECRETtoken42"
PASSWORD = "pa55Wordxyz"


def whale(n: int = 1, btc: float = 1234.5, **changes: Any) -> Signal:
    values: dict[str, Any] = {
        "urgency_score": 0.9,
        "urgency_level": Urgency.HIGH,
        "urgency_fallback": False,
        "predicted_blocks": 1,
    }
    return make_signal(f"{n:064x}", btc, **{**values, **changes})


def detected(n: int = 1, **changes: Any) -> Event:
    return Event(EventKind.DETECTED, whale(n, **changes))


async def no_wait(seconds: float) -> None:
    await asyncio.sleep(0)


def settings(*urls: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "apprise_urls": tuple(SecretStr(url) for url in urls),
        "notify_retries": 0,
        "notify_timeout": 5.0,
    }
    values.update(changes)
    return Settings(**values)


async def rows(store: Store, sql: str) -> list[tuple[Any, ...]]:
    def query(cursor: Any) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in cursor.execute(sql).fetchall()]

    return await store.read(query)


def value(metrics: Metrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def replies(*statuses: int) -> Callable[[Request], Awaitable[int]]:
    """A responder answering with `statuses` in turn, then 200."""
    pending = list(statuses)

    async def respond(request: Request) -> int:
        return pending.pop(0) if pending else 200

    return respond


async def test_receiver_error_then_success_is_retried(store: Store, metrics: Metrics) -> None:
    """A 500 answer is retried with backoff and the second attempt delivers."""
    async with Receiver(respond=replies(500)) as receiver:
        starts: list[Outgoing] = []
        notifier = Notifier(
            settings(receiver.url(), notify_retries=2),
            metrics,
            store,
            delay=no_wait,
            on_send_start=starts.append,
        )
        async with running(notifier):
            notifier.submit(detected())
            await receiver.wait_for(2)
    assert [out.items for out in starts] == [((f"{1:064x}", f"{1:064x}"),)] * 2
    assert [r.payload["title"] for r in receiver.received] == [
        "🐋 1,234.5 BTC → Binance (inflow)"
    ] * 2
    assert receiver.received[1].payload["type"] == "info"
    assert value(metrics, "whale_notifications_sent_total") == 1
    assert value(metrics, "whale_notifications_failed_total") == 0
    assert value(metrics, "whale_notification_duration_seconds_count") == 2
    found = await rows(store, "SELECT tag, kind, attempt, result FROM deliveries ORDER BY attempt")
    assert found == [("default", "new", 1, "retry"), ("default", "new", 2, "sent")]


async def test_dedup_survives_a_restart(tmp_path: Path, metrics: Metrics) -> None:
    """A new notifier over the same DuckDB file never resends, not even for a replacement."""
    async with Receiver() as receiver:
        first = Store(tmp_path / "w.duckdb")
        await first.open()
        async with running(Notifier(settings(receiver.url()), metrics, first)) as notifier:
            notifier.submit(detected(1))
            await receiver.wait_for(1)
        await first.close()

        again = Store(tmp_path / "w.duckdb")
        await again.open()
        restarted = Metrics(CollectorRegistry(), process=False)
        async with running(Notifier(settings(receiver.url()), restarted, again)) as notifier:
            notifier.submit(detected(1))
            replacement = whale(2, chain_id=f"{1:064x}", chain=[f"{1:064x}", f"{2:064x}"])
            notifier.submit(Event(EventKind.DETECTED, replacement))
            notifier.submit(detected(3))
            await receiver.wait_for(2)
        await again.close()
    assert [r.payload["message"].count(f"{3:064x}") > 0 for r in receiver.received] == [
        False,
        True,
    ]
    assert value(restarted, "whale_notifications_suppressed_total", reason="dedup") == 2


async def test_burst_is_folded_into_one_digest(store: Store, metrics: Metrics) -> None:
    """Past the per-window limit, alerts are folded into one digest sent when the window ends."""
    async with Receiver() as receiver:
        notifier = Notifier(
            settings(receiver.url(), notify_rate_per_minute=2), metrics, store, digest_window=0.3
        )
        async with running(notifier):
            for n in range(1, 6):
                notifier.submit(detected(n))
            await receiver.wait_for(3)
    titles = [r.payload["title"] for r in receiver.received]
    assert titles[:2] == ["🐋 1,234.5 BTC → Binance (inflow)"] * 2
    assert titles[2] == "🐋 Digest: 3 more whale alerts"
    digest = receiver.received[2].payload["message"]
    assert all(f"{n:064x}"[:12] in digest for n in (3, 4, 5))
    assert value(metrics, "whale_notifications_suppressed_total", reason="rate_limit") == 3
    assert value(metrics, "whale_notifications_sent_total") == 3
    kinds = await rows(store, "SELECT kind, count(*) FROM deliveries GROUP BY kind ORDER BY kind")
    assert kinds == [("digest", 3), ("new", 2)]


async def test_rules_filter_per_tag_and_send_follow_ups(
    tmp_path: Path, store: Store, metrics: Metrics
) -> None:
    """Each tag gets what its rule lets through, and follow-ups only where asked for."""
    rules = tmp_path / "rules.yml"
    rules.write_text(
        "traders:\n  min_btc: 500\n  flows: [inflow]\n  min_urgency: high\n"
        "desk:\n  follow_ups: [confirmed]\n"
    )
    async with Receiver() as traders, Receiver() as desk, Receiver() as oncall:
        apprise_config = config_file(
            tmp_path, {traders.url(): "traders", desk.url(): "desk", oncall.url(): "oncall"}
        )
        notifier = Notifier(
            settings(apprise_config=apprise_config, alert_rules=rules), metrics, store
        )
        async with running(notifier):
            notifier.submit(detected(1, btc=200))  # desk only: too small for traders
            notifier.submit(detected(2, flow=Flow.OUTFLOW))  # desk only: wrong flow
            notifier.submit(detected(3, urgency_level=Urgency.LOW))  # desk only: not urgent
            notifier.submit(detected(4))  # both
            confirmed = whale(4, status=Status.CONFIRMED, block_height=870_000)
            notifier.submit(Event(EventKind.RESOLVED, confirmed))  # desk: follow-up
            notifier.submit(Event(EventKind.RESOLVED, confirmed))  # desk: already told
            await desk.wait_for(5)
            await traders.wait_for(1)
    assert [r.payload["title"][0] for r in desk.received] == ["🐋"] * 4 + ["✅"]
    assert value(metrics, "whale_notifications_suppressed_total", reason="dedup") == 1
    assert len(traders.received) == 1
    assert f"{4:064x}" in traders.received[0].payload["message"]
    assert oncall.received == []
    # three whales rejected by traders, plus the confirmations traders did not ask for
    assert value(metrics, "whale_notifications_suppressed_total", reason="filter") == 5


async def test_email_through_aiosmtpd(store: Store, metrics: Metrics) -> None:
    """A mailto:// destination delivers the alert to a local SMTP server, logging in."""
    received: list[Envelope] = []
    logins: list[tuple[bytes, bytes]] = []
    arrived = asyncio.Event()

    class Handler:
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            received.append(envelope)
            arrived.set()
            return "250 OK"

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        logins.append((data.login, data.password))
        return AuthResult(success=True)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            Handler(), hostname="localhost", auth_require_tls=False, authenticator=authenticate
        ),
        "127.0.0.1",
        0,
    )
    port = server.sockets[0].getsockname()[1]
    url = f"mailto://whales:{PASSWORD}@127.0.0.1:{port}?from=whales@example.com&to=desk@example.com"
    try:
        async with running(Notifier(settings(url), metrics, store)) as notifier:
            notifier.submit(detected())
            async with asyncio.timeout(5):
                await arrived.wait()
    finally:
        server.close()
        await server.wait_closed()
    [envelope] = received
    assert envelope.rcpt_tos == ["desk@example.com"]
    mail = message_from_bytes(envelope.original_content or b"")
    assert str(make_header(decode_header(mail["Subject"]))) == "🐋 1,234.5 BTC → Binance (inflow)"
    assert logins == [(b"whales", PASSWORD.encode())]
    assert value(metrics, "whale_notifications_sent_total") == 1


async def test_secrets_never_leak(
    tmp_path: Path, store: Store, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    """The token and password of a failing URL are absent from logs, records, metrics, relay."""
    caplog.set_level(logging.DEBUG)
    async with Receiver(respond=replies(*[500] * 10)) as receiver:
        url = f"json://user:{PASSWORD}@127.0.0.1:{receiver.port}/hook/{SECRET}?+X-Api-Key={SECRET}x"
        apprise_config = config_file(tmp_path, {url: "oncall, traders"})
        notifier = Notifier(
            settings(url, apprise_config=apprise_config, notify_retries=1),
            metrics,
            store,
            delay=no_wait,
        )
        async with running(notifier):
            # Someone turns Apprise's debug logging on: the filter still redacts.
            logging.getLogger("apprise").setLevel(logging.DEBUG)
            logging.getLogger("urllib3").setLevel(logging.DEBUG)
            notifier.submit(detected())
            result = await notifier.relay(_alertmanager_payload())
            await receiver.wait_for(4)
        logging.getLogger("apprise").setLevel(logging.NOTSET)
        logging.getLogger("urllib3").setLevel(logging.NOTSET)
    assert receiver.received[0].path == f"/hook/{SECRET}"  # the secret really was used
    assert result["failed"] == 1
    assert "POST" in caplog.text  # Apprise's debug lines were captured, redacted
    recorded = await rows(store, "SELECT * FROM deliveries")
    assert len(recorded) >= 4
    exposed = generate_latest(metrics.registry).decode()
    for text in (caplog.text, repr(recorded), exposed, repr(result)):
        assert SECRET not in text
        assert PASSWORD not in text


async def test_relay_sends_alertmanager_groups_to_oncall(
    tmp_path: Path, store: Store, metrics: Metrics
) -> None:
    """Firing and resolved Alertmanager groups reach only `oncall`, typed by severity."""
    async with Receiver() as oncall, Receiver() as traders:
        apprise_config = config_file(tmp_path, {oncall.url(): "oncall", traders.url(): "traders"})
        notifier = Notifier(settings(apprise_config=apprise_config), metrics, store)
        async with running(notifier):
            fired = await notifier.relay(_alertmanager_payload("firing", "critical"))
            warned = await notifier.relay(_alertmanager_payload("firing", "warning"))
            resolved = await notifier.relay(_alertmanager_payload("resolved", "critical"))
            with pytest.raises(ValueError, match="version"):
                await notifier.relay({"version": "3"})
    assert fired == {
        "status": "firing",
        "alerts": 1,
        "messages": 1,
        "destinations": 1,
        "relayed": 1,
        "failed": 0,
    }
    assert warned["relayed"] == resolved["relayed"] == 1
    got = [(r.payload["type"], r.payload["title"]) for r in oncall.received]
    assert got == [
        ("failure", "[FIRING:1] Stream down"),
        ("warning", "[FIRING:1] Stream down"),
        ("success", "[RESOLVED] Stream down"),
    ]
    assert "No frame for 5m" in oncall.received[0].payload["message"]
    assert traders.received == []


async def test_invalid_url_is_a_config_error_without_the_secret(
    store: Store, metrics: Metrics
) -> None:
    """An unusable Apprise URL fails start-up naming its position, not its token."""
    notifier = Notifier(settings(f"nosuchscheme://{SECRET}@host/x"), metrics, store)
    with pytest.raises(ConfigError) as info:
        await notifier.start()
    await notifier.close()
    assert "URL #1 (nosuchscheme://***)" in str(info.value)
    assert SECRET not in str(info.value)


async def test_bad_rules_file_is_a_config_error(
    tmp_path: Path, store: Store, metrics: Metrics
) -> None:
    """A rules file with an unknown key fails start-up naming the flag and the key."""
    rules = tmp_path / "rules.yml"
    rules.write_text("traders:\n  min_bitcoin: 5\n")
    notifier = Notifier(settings("json://127.0.0.1:9/x", alert_rules=rules), metrics, store)
    with pytest.raises(ConfigError, match=r"--alert-rules .*traders: unknown key 'min_bitcoin'"):
        await notifier.start()
    await notifier.close()


def test_redactor_removes_url_parts_from_free_text() -> None:
    """Tokens in a path, a password and a bot token are removed even outside a URL."""
    urls = [f"tgram://123456789:{SECRET}/-100200", f"mailto://bob:{PASSWORD}@smtp.example.com"]
    redact = Redactor(s for url in urls for s in url_secrets(url))
    text = f"bad token {SECRET}; login {PASSWORD} failed; see {urls[0]}"
    clean = redact(text)
    assert SECRET not in clean and PASSWORD not in clean
    assert "tgram://***" in clean


def _alertmanager_payload(status: str = "firing", severity: str = "critical") -> dict[str, Any]:
    labels = {"alertname": "WhaleStreamDown", "severity": severity}
    return {
        "version": "4",
        "groupKey": "{}:{}",
        "status": status,
        "receiver": "oncall",
        "groupLabels": {"alertname": "WhaleStreamDown"},
        "commonLabels": labels,
        "commonAnnotations": {"summary": "Stream down", "description": "No frame for 5m."},
        "externalURL": "http://alertmanager:9093",
        "alerts": [{"status": status, "labels": labels, "annotations": {}}],
    }
