"""Notifier: the task that runs the router and the deliveries, never blocking detection.

    submit(event) ─> router (rules, dedup, rate windows) ─> one backlog per destination ─> send
                          └─> digest timer                       └─ held while down     │ retries
                                                                                         └─> records

`submit` routes at once (pure, no await) and never raises. Each destination has its own backlog
and worker, so a dead or hanging destination delays only itself. Dedup keys and delivery
records go to DuckDB in batches through one recorder task. URLs and secrets live only in the
destination objects (`delivery.py`, `webhook.py`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from exporter import logs
from exporter.config import Settings, env_name, flag
from exporter.core.models import Event
from exporter.errors import ConfigError, StoreUnavailable
from exporter.metrics import Metrics
from exporter.notify import alertmanager as relay_format
from exporter.notify import outbox, webhook
from exporter.notify.backlog import Backlog
from exporter.notify.delivery import (
    Delay,
    Delivery,
    Destination,
    LogGuard,
    backoff,
    load_apprise,
)
from exporter.notify.outgoing import RELAY, Item, Outgoing
from exporter.notify.router import Decision, Router, Send
from exporter.notify.rules import RELAY_TAG, Rules, parse_rules
from exporter.redact import Redactor, url_secrets
from exporter.shell.store import Store

log = logging.getLogger(__name__)
throttled = logs.Throttled(log)
DAY = 86_400.0
OWN_LOGGERS = (__name__, "exporter.notify.delivery")  # their lines may quote a library's error
KeyRow = tuple[str, str, str, str, float]  # ("key", dedup_key, chain_id, kind, created_at)
# ("delivery", sent_at, chain_id, txid, tag, kind, attempt, result, error)
DeliveryRow = tuple[str, float, str | None, str | None, str, str, int, str, str | None]

__all__ = ["Notifier", "Outgoing", "backoff"]


@dataclass(eq=False, slots=True)
class _Lane:
    """One destination, its backlog and the events its worker waits on."""

    dest: Destination
    backlog: Backlog
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    probes: int = 0
    sending: Outgoing | None = None  # the message out for delivery right now


class Notifier:
    """Delivers notifications; see the module docstring for the flow.

    `delay` waits between retries and probes (tests pass a fast one), `digest_window` is the
    rate-limit window in seconds, `queue_size` the backlog of each destination,
    `on_send_start(outgoing)` runs just before each send (the latency benchmark's probe), and
    `whale_json(signal)` shapes the whales in webhook bodies (the HTTP API's shape).
    """

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        queue_size: int = 1000,
        delay: Delay = asyncio.sleep,
        digest_window: float = 60.0,
        on_send_start: Callable[[Outgoing], None] | None = None,
        whale_json: webhook.ToJson = webhook.plain_json,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._store = store
        self._clock = clock
        self._queue_size = queue_size
        self._delay = delay
        self._window = digest_window
        self._whale_json = whale_json
        self._delivery = Delivery(
            metrics,
            self._record_delivery,
            retries=settings.notify_retries,
            timeout=settings.notify_timeout,
            delay=delay,
            on_send_start=on_send_start,
        )
        self._records: asyncio.Queue[KeyRow | DeliveryRow] = asyncio.Queue()
        self._lanes: dict[str, _Lane] = {}
        self._by_tag: dict[str, list[_Lane]] = {}
        self._router: Router | None = None
        self._client: httpx.AsyncClient | None = None
        self._due = asyncio.Event()
        self.redact = Redactor()
        self._guard: LogGuard | None = None
        self._closing = False
        self._stop = asyncio.Event()
        self._stopped = asyncio.Event()
        self._running = False

    # -- start-up -------------------------------------------------------------------------

    @property
    def tags(self) -> dict[str, int]:
        """Destination tags and how many destinations each has (no URLs)."""
        return {tag: len(lanes) for tag, lanes in self._by_tag.items()}

    def load(self) -> None:
        """Load destinations and rules; ConfigError with one line per problem. Idempotent."""
        if self._router is not None:
            return
        if self._guard is None:
            self._guard = LogGuard.install(self.redact, *OWN_LOGGERS)
        settings = self._settings
        raw = [url.get_secret_value() for url in settings.apprise_urls]
        hooks = [url.get_secret_value() for url in settings.webhook_urls]
        secret = settings.webhook_secret
        self.redact.add(s for url in (*raw, *hooks) for s in url_secrets(url))
        if secret is not None:
            self.redact.add([secret.get_secret_value()])
        try:
            found: list[Destination] = [*load_apprise(raw, settings.apprise_config, self.redact)]
            rules = _load_rules(settings.alert_rules)
        except ConfigError:
            self._guard.remove(*OWN_LOGGERS)
            self._guard = None
            raise
        # The webhooks' URLs and key: masked in the exporter's log too.
        logs.SECRETS.add(s for url in hooks for s in url_secrets(url))
        if secret is not None:
            logs.SECRETS.add([secret.get_secret_value()])
        if hooks and secret is not None:
            self._client = httpx.AsyncClient(follow_redirects=False)
            key = secret.get_secret_value().encode()
            for index, url in enumerate(hooks):
                found.append(
                    webhook.WebhookDestination(
                        f"webhook#{index}", url, key, self._client, self._whale_json, self._clock
                    )
                )
        for dest in found:
            tags = ",".join(dest.tags)
            lane = _Lane(dest, Backlog(tags, self._queue_size, settings.explorer_tx_url))
            lane.idle.set()
            self._lanes[dest.name] = lane
            for tag in dest.tags:
                self._by_tag.setdefault(tag, []).append(lane)
            self._metrics.notify_destination_up.labels(dest.name).set(1)
            self._metrics.notify_backlog.labels(dest.name).set(0)
            for reason in ("overflow", "outage"):
                self._metrics.notify_folded.labels(dest.name, reason)
        self._by_tag = dict(sorted(self._by_tag.items()))
        for tag in rules.routes:
            if tag not in self._by_tag:
                log.warning("notifier: the alert rules name tag %r but no destination has it", tag)
        self._router = Router(
            rules,
            {tag: [lane.dest.name for lane in lanes] for tag, lanes in self._by_tag.items()},
            link=settings.explorer_tx_url,
            limit=settings.notify_rate_per_minute,
            window=self._window,
            keep=settings.retention_days * DAY,
        )

    async def start(self) -> None:
        """Load destinations and rules (ConfigError on a bad one) and the persisted dedup keys."""
        self.load()
        router = self._router
        assert router is not None
        now = self._clock()
        since = now - self._settings.retention_days * DAY
        router.load(await self._store.notification_keys(since), now)
        self._metrics.notify_dedup_keys.set(router.key_count)
        await self._carry_over()
        log.info(
            "notifier: %d destination(s) by tag %s; %d dedup keys loaded",
            len(self._lanes),
            self.tags or "{}",
            router.key_count,
        )

    # -- intake -----------------------------------------------------------------------------

    def submit(self, event: Event) -> None:
        """Route an event to the destinations' backlogs. Never blocks, never raises."""
        if self._closing or not self._lanes or self._router is None:
            return
        try:
            decision = self._router.route(event, self._clock())
            self._apply(decision)
        except Exception:  # submit must never break detection
            self._metrics.notify_failed.inc()
            log.exception("notifier: cannot route a %s event", event.kind.value)

    def _apply(self, decision: Decision) -> None:
        for reason, count in decision.suppressed.items():
            self._metrics.notify_suppressed.labels(reason).inc(count)
            if reason == "rate_limit":
                self._due.set()
        for claim in decision.claims:
            self._records.put_nowait(("key", claim.key, claim.chain_id, claim.kind, claim.at))
        if self._router is not None:  # claims add keys; an hourly sweep drops old ones
            self._metrics.notify_dedup_keys.set(self._router.key_count)
        self._enqueue(decision.sends)

    def _enqueue(self, sends: list[Send]) -> None:
        for send in sends:
            for name in send.destinations:
                lane = self._lanes[name]
                folded = lane.backlog.push(send.out)
                if folded:
                    self._metrics.notify_folded.labels(name, "overflow").inc(folded)
                    throttled.warning(
                        name,
                        "notifier: %s is %d messages behind; folding the oldest into a digest",
                        name,
                        lane.backlog.size,
                    )
                lane.idle.clear()
                lane.wake.set()
                self._update_gauges(lane)

    # -- serve ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run one worker per destination, the digest timer and the recorder until close()."""
        if self._stopped.is_set():
            return
        self._running = True
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self._digest_loop(), name="notify-digests"),
                    group.create_task(self._record_loop(), name="notify-record"),
                ]
                tasks += [
                    group.create_task(self._lane_loop(lane), name=f"notify-{name}")
                    for name, lane in self._lanes.items()
                ]
                await self._stop.wait()
                for task in tasks:
                    task.cancel()
        finally:
            self._running = False
            self._stopped.set()

    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (the interface)
        """Stop taking events, deliver what is queued (digests too) within `timeout`, then stop."""
        self._closing = True
        if self._running:
            try:
                async with asyncio.timeout(timeout):
                    if self._router is not None:
                        self._enqueue(self._router.flush(self._clock()))
                    for lane in self._lanes.values():
                        await lane.idle.wait()
                    await self._records.join()
            except TimeoutError:
                log.warning(
                    "notifier: %d notification(s) still queued after %.1f s; they go out "
                    "after the next start",
                    sum(len(lane.backlog) for lane in self._lanes.values()),
                    timeout,
                )
            self._stop.set()
            await self._stopped.wait()
        else:
            self._stop.set()
            self._stopped.set()
        await self._record_leftovers()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._guard is not None:
            self._guard.remove(*OWN_LOGGERS)
            self._guard = None

    async def _record_leftovers(self) -> None:
        """Store what the stopped recorder left, and carry every message a destination has not
        taken over to the next start (`outbox.py`), recorded as `held` in `deliveries`."""
        rows: list[KeyRow | DeliveryRow] = []
        while not self._records.empty():
            rows.append(self._records.get_nowait())
        held, kept = _left_at_stop(self._lanes, self._clock())
        for lane in self._lanes.values():
            self._update_gauges(lane)
        if not (rows or kept) or not self._store.is_open:
            return
        try:
            if kept:
                await self._store.save_outbox(kept)
            await self._store.record_notifications([*rows, *held])
        except Exception as exc:
            log.warning("notifier: cannot store %d record(s) and %d held message(s) at "
                        "shutdown: %s", len(rows), len(kept), self.redact(repr(exc)))  # fmt: skip

    async def _carry_over(self) -> None:
        """Hold again what destinations had not taken when the last run stopped."""
        try:
            carried = _hold_again(self._lanes, await self._store.take_outbox())
        except StoreUnavailable as exc:  # kept for the next start
            log.warning("notifier: cannot read the alerts held at the last stop: %s", exc)
            return
        for lane in self._lanes.values():
            self._update_gauges(lane)
        if carried:
            log.info("notifier: %d alert(s) held at the last stop go out as a digest", carried)

    async def _digest_loop(self) -> None:
        """Send each tag's digest when its rate window ends."""
        while True:
            assert self._router is not None
            due = self._router.next_due()
            self._due.clear()
            if due is None:
                await self._due.wait()
                continue
            wait = due - self._clock()
            if wait > 0:
                try:
                    async with asyncio.timeout(wait):
                        await self._due.wait()
                    continue
                except TimeoutError:
                    pass
            self._enqueue(self._router.due(self._clock()))

    async def _lane_loop(self, lane: _Lane) -> None:
        """Deliver one destination's backlog; while it is down, probe with what is held."""
        name = lane.dest.name
        while True:
            backlog = lane.backlog
            out, folded = backlog.next(self._clock())
            if folded:
                self._metrics.notify_folded.labels(name, "outage").inc(folded)
            self._update_gauges(lane)
            if out is None:
                lane.idle.set()
                lane.wake.clear()
                await lane.wake.wait()
                continue
            was_down = backlog.down
            lane.sending = out  # a send cut off by shutdown is recorded as dropped
            result = await self._delivery.deliver(lane.dest, out, retries=0 if was_down else None)
            lane.sending = None
            if result.ok:
                backlog.delivered()
                lane.probes = 0
                if was_down:
                    log.warning("notifier: %s is back; sent %d held alert(s)", name, out.count)
            elif result.again or was_down:
                backlog.failed(out, self._clock())
                lane.probes += 1
                if not was_down:
                    log.warning(
                        "notifier: %s is down (%s); holding its alerts for one digest",
                        name,
                        result.error,
                    )
                self._update_gauges(lane)
                await self._delay(backoff(lane.probes))
            else:
                throttled.warning(
                    f"{name}-refused",
                    "notifier: %s to %s refused: %s",
                    out.kind,
                    name,
                    result.error,
                )

    def _update_gauges(self, lane: _Lane) -> None:
        name = lane.dest.name
        self._metrics.notify_backlog.labels(name).set(len(lane.backlog))
        self._metrics.notify_destination_up.labels(name).set(0 if lane.backlog.down else 1)
        self._metrics.notify_queue.set(sum(len(one.backlog) for one in self._lanes.values()))

    # -- Alertmanager -------------------------------------------------------------------------

    async def relay(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Deliver an Alertmanager webhook (v4) to the destinations tagged `oncall`.

        Raises ValueError on an invalid payload. Waits for delivery (with retries); the
        result counts deliveries and never holds a URL.
        """
        group = relay_format.parse(payload)
        built = relay_format.messages(group)
        lanes = self._by_tag.get(RELAY_TAG, [])
        now = self._clock()
        outgoing = [
            Outgoing(RELAY_TAG, RELAY, m.title, m.body, m.notify_type, created_at=now)
            for m in built
        ]
        results = await asyncio.gather(
            *(self._delivery.deliver(lane.dest, out) for out in outgoing for lane in lanes)
        )
        if not lanes:
            log.warning(
                "notifier: Alertmanager payload received but no destination is tagged %r", RELAY_TAG
            )
        delivered = sum(1 for result in results if result.ok)
        return {
            "status": group.status,
            "alerts": len(group.alerts),
            "messages": len(outgoing),
            "destinations": len(lanes),
            "relayed": delivered,
            "failed": len(results) - delivered,
        }

    # -- records ------------------------------------------------------------------------------

    def _record_delivery(self, out: Outgoing, attempt: int, result: str, error: str | None) -> None:
        items = out.items if result == "sent" or not out.is_digest else ()
        for row in _delivery_rows(out, items, self._clock(), attempt, result, error):
            self._records.put_nowait(row)

    async def _record_loop(self) -> None:
        while True:
            batch = [await self._records.get()]
            while not self._records.empty():
                batch.append(self._records.get_nowait())
            try:
                await self._store.record_notifications(batch)
            except Exception as exc:
                throttled.warning(
                    "records",
                    "notifier: cannot store %d notification record(s): %s",
                    len(batch),
                    self.redact(repr(exc)),
                )
            finally:
                for _ in batch:
                    self._records.task_done()


def _left_at_stop(
    lanes: Mapping[str, _Lane], now: float
) -> tuple[list[DeliveryRow], list[tuple[str, float, str]]]:
    """What each destination has not taken (its queue, its held digest, a send cut off): a
    `held` delivery row per alert, and an outbox entry per message."""
    rows: list[DeliveryRow] = []
    kept: list[tuple[str, float, str]] = []
    for name, lane in lanes.items():
        left = lane.backlog.drain(now)
        if lane.sending is not None:
            left.insert(0, lane.sending)
            lane.sending = None
        for out in left:
            kept.append((name, now, outbox.encode(out)))
            rows += _delivery_rows(out, out.items, now, 0, "held", "carried over to the next start")
    return rows, kept


def _delivery_rows(
    out: Outgoing, items: Sequence[Item], at: float, attempt: int, result: str, error: str | None
) -> list[DeliveryRow]:
    """One `deliveries` row per alert `items` names (one row without a whale when none)."""
    return [
        ("delivery", at, chain_id, txid, out.tag, out.kind, attempt, result, error)
        for chain_id, txid in items or ((None, None),)
    ]


def _hold_again(lanes: Mapping[str, _Lane], held: list[tuple[str, float, str]]) -> int:
    """Put the outbox's messages back in their destinations' backlogs; returns the alerts."""
    carried = 0
    for name, _, text in held:
        lane = lanes.get(name)
        try:
            out = outbox.decode(text)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("notifier: a held message cannot be read back: %s", exc)
            continue
        if lane is None:
            log.warning("notifier: %d alert(s) held for %s, which is gone", out.count, name)
            continue
        lane.backlog.hold(out)
        lane.idle.clear()
        carried += out.count
    return carried


def _load_rules(path: Path | None) -> Rules:
    if path is None:
        return Rules.default()
    where = f"{flag('alert_rules')} / {env_name('alert_rules')}: {path}"
    try:
        return parse_rules(path.read_text(encoding="utf-8"), where)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read: {exc.__class__.__name__}") from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
