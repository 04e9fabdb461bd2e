"""Fault suite, notifications: destinations down, failing or hanging, then back; bad config.

Real Apprise posts to real local receivers (exporter/sim/receiver.py) over loopback. A message
counts as delivered only when its receiver answered 2xx; each case asserts what a user would:
no whale lost, none told twice, one dead destination never delaying another.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from support import config_file, make_signal, running, short_backoff, wait_for

from exporter.config import Settings
from exporter.core.models import Event, EventKind, Urgency
from exporter.metrics import Metrics
from exporter.notify.notifier import Notifier
from exporter.shell.store import Store
from exporter.sim.receiver import Receiver, Request

SECRET = "Tk9SECRETtoken42"


def txid(n: int) -> str:
    return f"{n:064x}"


def detected(n: int) -> Event:
    signal = make_signal(txid(n), 1234.5, urgency_level=Urgency.HIGH, urgency_score=0.9)
    return Event(EventKind.DETECTED, signal)


class Switch:
    """A receiver's behaviour: answer `status` (or hang until released); record what got 2xx."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.hang = False
        self.released = asyncio.Event()
        self.accepted: list[Request] = []

    async def __call__(self, request: Request) -> int:
        if self.hang:
            await self.released.wait()
            return 503  # a request that hung is never counted as delivered
        if self.status < 300:
            self.accepted.append(request)
        return self.status

    def told(self, n: int) -> int:
        """How many accepted messages speak of whale `n`."""
        return sum(txid(n) in str(r.payload.get("message", "")) for r in self.accepted)


def settings(*urls: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "apprise_urls": tuple(SecretStr(url) for url in urls),
        "notify_retries": 1,
        "notify_timeout": 5.0,
        "notify_rate_per_minute": 1000,
    }
    return Settings(**{**values, **changes})


def up(metrics: Metrics, destination: str) -> float | None:
    return metrics.registry.get_sample_value(
        "whale_notification_destination_up", {"destination": destination}
    )


def folded(metrics: Metrics, destination: str, reason: str) -> float:
    found = metrics.registry.get_sample_value(
        "whale_notifications_folded_total", {"destination": destination, "reason": reason}
    )
    return found or 0.0


async def test_failing_destination_gets_one_digest_then_new_whales_at_once(
    store: Store, metrics: Metrics
) -> None:
    """A destination answering 500 through a long outage gets every whale once, as one digest,
    and whales after it recovers one by one: a full queue never refuses a new whale."""
    switch = Switch(500)
    async with Receiver(respond=switch) as receiver:
        notifier = Notifier(
            settings(receiver.url()), metrics, store, queue_size=5, delay=short_backoff
        )
        async with running(notifier):
            for n in range(1, 21):  # 20 whales during the outage: four times the queue
                notifier.submit(detected(n))
            # Two failed attempts and a failed probe: the destination is down.
            await wait_for(lambda: len(receiver.received) >= 3, what="three failed attempts")
            switch.status = 200
            await wait_for(lambda: switch.accepted != [], what="the destination to recover")
            for n in range(21, 24):
                notifier.submit(detected(n))
            await wait_for(lambda: all(switch.told(n) for n in range(1, 24)), what="every whale")
    digests = [r for r in switch.accepted if "while the destination was down" in r.payload["title"]]
    assert [r.payload["title"] for r in digests] == [
        "🐋 20 whale alerts while the destination was down"
    ]
    assert [switch.told(n) for n in range(1, 24)] == [1] * 23  # none lost, none twice
    assert [r.payload["title"] for r in switch.accepted[1:]] == [
        "🐋 1,234.5 BTC → Binance (inflow)"
    ] * 3
    assert up(metrics, "json#0") == 1
    assert folded(metrics, "json#0", "overflow") + folded(metrics, "json#0", "outage") >= 15
    sent = metrics.registry.get_sample_value("whale_notifications_sent_total")
    assert sent == 4


async def test_dead_destination_does_not_delay_another_and_catches_up(
    tmp_path: Path, store: Store, metrics: Metrics
) -> None:
    """While one destination refuses connections, another gets each whale at once; when the
    dead one comes back on its port it gets everything it missed, once."""
    async with Receiver() as placeholder:
        dead_port = placeholder.port  # free again once closed: a destination that is down
    live = Switch()
    back = Switch()
    async with Receiver(respond=live) as alive:
        apprise_config = config_file(
            tmp_path, {f"json://127.0.0.1:{dead_port}/dead": "a", alive.url(): "b"}
        )
        notifier = Notifier(
            settings(apprise_config=apprise_config), metrics, store, delay=short_backoff
        )
        async with running(notifier):
            for n in range(1, 6):
                notifier.submit(detected(n))
                await wait_for(lambda n=n: live.told(n) == 1, what=f"whale {n} at the live one")
            await wait_for(lambda: up(metrics, "json#0") == 0, what="the dead one to be down")
            async with Receiver(port=dead_port, respond=back):
                await wait_for(lambda: up(metrics, "json#0") == 1, what="the dead one back")
                await wait_for(lambda: back.accepted != [], what="the catch-up digest")
    assert [live.told(n) for n in range(1, 6)] == [1] * 5
    assert [back.told(n) for n in range(1, 6)] == [1] * 5
    assert back.accepted[0].payload["title"] == "🐋 5 whale alerts while the destination was down"


async def test_hanging_destination_times_out_and_holds_while_another_is_served(
    tmp_path: Path, store: Store, metrics: Metrics
) -> None:
    """A destination that hangs times out and is held while another gets every whale; when it
    answers again it gets one digest of what it missed; nothing that hung counts twice."""
    slow = Switch()
    slow.hang = True
    fast = Switch()
    async with Receiver(respond=slow) as hanging, Receiver(respond=fast) as quick:
        apprise_config = config_file(tmp_path, {hanging.url(): "slow", quick.url(): "fast"})
        notifier = Notifier(
            settings(apprise_config=apprise_config, notify_timeout=1.0, notify_retries=0),
            metrics,
            store,
            delay=short_backoff,
        )
        async with running(notifier):
            for n in range(1, 6):
                notifier.submit(detected(n))
            await wait_for(lambda: all(fast.told(n) for n in range(1, 6)), what="fast: all five")
            assert not slow.released.is_set()  # served while the other still hangs
            await wait_for(lambda: up(metrics, "json#0") == 0, what="the hanging one held")
            slow.hang = False
            slow.released.set()
            await wait_for(lambda: all(slow.told(n) for n in range(1, 6)), what="slow: caught up")
    assert [fast.told(n) for n in range(1, 6)] == [1] * 5
    assert [slow.told(n) for n in range(1, 6)] == [1] * 5
    assert len(slow.accepted) == 1  # one digest
    assert await _failed_rows(store, "slow") >= 1


async def test_full_queue_while_up_folds_the_oldest_never_the_newest(
    store: Store, metrics: Metrics
) -> None:
    """Submitting past the queue's size before delivery starts keeps the newest whales as
    messages and folds the oldest into one digest: nothing is refused."""
    switch = Switch()
    async with Receiver(respond=switch) as receiver:
        notifier = Notifier(settings(receiver.url()), metrics, store, queue_size=3)
        await notifier.start()
        for n in range(1, 9):
            notifier.submit(detected(n))  # the workers are not running yet
        task = asyncio.create_task(notifier.run())
        await wait_for(lambda: all(switch.told(n) for n in range(1, 9)), what="all eight")
        await notifier.close()
        await task
    titles = [r.payload["title"] for r in switch.accepted]
    assert [switch.told(n) for n in range(1, 9)] == [1] * 8
    assert titles[-1] == "🐋 Digest: 5 older whale alerts"
    first = [
        next(n for n in range(1, 9) if txid(n) in r.payload["message"]) for r in switch.accepted[:3]
    ]
    assert first == [6, 7, 8]  # the newest went out as themselves, in order
    assert folded(metrics, "json#0", "overflow") == 5


async def test_alerts_held_at_shutdown_go_out_after_the_next_start(
    store: Store, metrics: Metrics
) -> None:
    """Alerts a down destination still holds when the notifier stops are saved, recorded as
    `held`, and delivered once, as one digest, by the next run once the destination is back."""
    switch = Switch(500)
    async with Receiver(respond=switch) as receiver:
        first = Notifier(settings(receiver.url()), metrics, store, delay=short_backoff)
        async with running(first, timeout=0.2):
            for n in range(1, 4):
                first.submit(detected(n))
            await wait_for(lambda: up(metrics, "json#0") == 0, what="the destination to be down")

        def held(cursor: Any) -> list[tuple[Any, ...]]:
            sql = "SELECT txid, error FROM deliveries WHERE result = 'held' ORDER BY txid"
            return [tuple(row) for row in cursor.execute(sql).fetchall()]

        carried = "carried over to the next start"
        assert await store.read(held) == [(txid(n), carried) for n in (1, 2, 3)]
        assert switch.accepted == []
        backlog = metrics.registry.get_sample_value(
            "whale_notification_backlog_messages", {"destination": "json#0"}
        )
        assert backlog == 0

        switch.status = 200
        second = Notifier(settings(receiver.url()), metrics, store, delay=short_backoff)
        async with running(second):
            await wait_for(lambda: switch.accepted != [], what="the held alerts")
            second.submit(detected(4))
            await wait_for(lambda: switch.told(4) == 1, what="a new whale")
    titles = [r.payload["title"] for r in switch.accepted]
    assert titles == [
        "🐋 3 whale alerts while the destination was down",
        "🐋 1,234.5 BTC → Binance (inflow)",
    ]
    assert [switch.told(n) for n in range(1, 5)] == [1] * 4  # none lost, none twice
    assert await store.take_outbox() == []  # taken by the second start, not kept twice


async def _failed_rows(store: Store, tag: str) -> int:
    def count(cursor: Any) -> int:
        return int(
            cursor.execute(
                "SELECT count(*) FROM deliveries WHERE tag = ? AND result IN ('failed', 'retry')",
                [tag],
            ).fetchone()[0]
        )

    return await store.read(count)


# --- the bad-config matrix (real child processes) --------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WHALE_")}
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("make_args", "setting"),
    [
        (lambda p: ["--apprise-url", f"nosuchscheme://{SECRET}@host/x"], "--apprise-url"),
        (
            lambda p: ["--apprise-url", "json://127.0.0.1:9/x", "--alert-rules", str(p)],
            "--alert-rules",
        ),
        (
            lambda p: ["--webhook-url", f"http://127.0.0.1:9/{SECRET}"],
            "--webhook-secret / WHALE_WEBHOOK_SECRET: required",
        ),
        (
            lambda p: ["--webhook-url", f"ftp://{SECRET}@host/x", "--webhook-secret", "k" * 20],
            "--webhook-url / WHALE_WEBHOOK_URLS",
        ),
        (
            lambda p: ["--webhook-url", "http://127.0.0.1:9/x", "--webhook-secret", SECRET[:8]],
            "--webhook-secret / WHALE_WEBHOOK_SECRET: must be at least 16",
        ),
    ],
    ids=[
        "invalid-apprise-url",
        "unparsable-rules-file",
        "webhook-without-secret",
        "webhook-not-http",
        "webhook-secret-too-short",
    ],
)
def test_bad_notification_config_exits_2_with_one_masked_line(
    tmp_path: Path, make_args: Callable[[Path], list[str]], setting: str
) -> None:
    """An invalid Apprise or webhook URL, an unparsable rules file or a missing or short webhook
    key: exit 2, one line naming the setting, the secret masked, no traceback, nothing else."""
    rules = tmp_path / "rules.yml"
    rules.write_text(f"traders: [{SECRET},\n  min_btc: 5\n")
    result = run_cli(
        *make_args(rules), "--db", str(tmp_path / "w.duckdb"), "--listen", "127.0.0.1:0"
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mempool-whale-exporter: config error: ")
    assert setting in lines[0]
    assert SECRET not in result.stderr
    assert not (tmp_path / "w.duckdb").exists()  # refused before anything was opened
