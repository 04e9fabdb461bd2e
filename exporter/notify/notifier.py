"""Notifier: whale events and Alertmanager pages to Apprise destinations, never blocking detection.

    submit(event) ─> inbox (bounded) ─> dispatcher ─> one queue per Apprise service ─> send
                                         │ rules, dedup, rate limit            │ timeout, retries
                                         └─> digest timer (one per tag)       └─> records (DuckDB)

`submit` is O(1) and never raises. The dispatcher decides per Apprise tag (the rules, the dedup
keys, the per-minute limit) without awaiting; each service has its own worker, so a hanging
destination delays only itself. Dedup keys and delivery records are written in batches by one
recorder task. URLs carry tokens: they appear nowhere but in Apprise's own objects. Logs of
Apprise and urllib3 are raised to WARNING and pass through a redacting filter while running.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apprise
from apprise import NotifyFormat, NotifyType

from exporter import logs
from exporter.config import Settings, env_name, flag
from exporter.core.models import Event
from exporter.errors import ConfigError
from exporter.metrics import Metrics
from exporter.notify import alertmanager as relay_format
from exporter.notify import message
from exporter.notify.rules import (
    RELAY_TAG,
    UNTAGGED,
    Notice,
    NoticeKind,
    Rules,
    Verdict,
    decide,
    dedup_key,
    notice_for,
    parse_rules,
)
from exporter.redact import RedactingFilter, Redactor, url_secrets
from exporter.shell.store import Connection, Store

log = logging.getLogger(__name__)
throttled = logs.Throttled(log)

GUARDED_LOGGERS = ("apprise", "urllib3", "urllib3.connectionpool", "requests", __name__)
QUIET_LOGGERS = ("apprise", "urllib3")
BACKOFF_BASE = 1.0
BACKOFF_MAX = 60.0
MAX_ERROR = 500
NOTIFY_TYPE = {
    NoticeKind.NEW: NotifyType.INFO,
    NoticeKind.CONFIRMED: NotifyType.SUCCESS,
    NoticeKind.REPLACED: NotifyType.WARNING,
    NoticeKind.DROPPED: NotifyType.WARNING,
    NoticeKind.EXPIRED: NotifyType.WARNING,
    NoticeKind.CORRECTED: NotifyType.INFO,
}
Delay = Callable[[float], Awaitable[Any]]
Item = tuple[str | None, str | None]  # (chain_id, txid) a message speaks of


@dataclass(slots=True)
class _LogGuard:
    filter: RedactingFilter
    levels: dict[str, int] = field(default_factory=dict)

    @classmethod
    def install(cls, redact: Redactor) -> _LogGuard:
        guard = cls(RedactingFilter(redact))
        for name in GUARDED_LOGGERS:
            logging.getLogger(name).addFilter(guard.filter)
        for name in QUIET_LOGGERS:
            logger = logging.getLogger(name)
            if logger.getEffectiveLevel() < logging.WARNING:
                guard.levels[name] = logger.level
                logger.setLevel(logging.WARNING)
        return guard

    def remove(self) -> None:
        for name in GUARDED_LOGGERS:
            logging.getLogger(name).removeFilter(self.filter)
        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)


# --- values -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for the services of one tag."""

    tag: str
    kind: str  # a NoticeKind value, "digest" or "alertmanager"
    title: str
    body: str
    notify_type: NotifyType = NotifyType.INFO
    items: tuple[Item, ...] = ()


@dataclass(eq=False, slots=True)
class _Service:
    """One Apprise service and its own delivery queue. `name` is `scheme#index`: no secrets."""

    name: str
    tags: tuple[str, ...]
    apprise: apprise.Apprise
    queue: asyncio.Queue[Outgoing]


@dataclass(slots=True)
class _Window:
    """The rate-limit window of one tag: alerts sent, then alerts folded into its digest."""

    start: float
    sent: int = 0
    folded: list[tuple[str, tuple[Item, ...], list[_Service]]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (1, 2, 4, ... up to a minute)."""
    return float(min(BACKOFF_BASE * 2 ** (attempt - 1), BACKOFF_MAX))


# --- the notifier -------------------------------------------------------------------------


class Notifier:
    """Delivers notifications; see the module docstring for the flow.

    `delay` waits between retries (tests pass a fast one), `digest_window` is the rate-limit
    window in seconds, and `on_send_start(outgoing)` runs just before each Apprise call (the
    latency benchmark's probe).
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
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._store = store
        self._clock = clock
        self._queue_size = queue_size
        self._delay = delay
        self._window = digest_window
        self._on_send_start = on_send_start
        self._inbox: asyncio.Queue[Event] = asyncio.Queue(queue_size)
        self._records: asyncio.Queue[_Record] = asyncio.Queue()
        self._services: list[_Service] = []
        self._by_tag: dict[str, list[_Service]] = {}
        self._rules = Rules.default()
        self._claimed: set[str] = set()
        self._windows: dict[str, _Window] = {}
        self.redact = Redactor()
        self._guard: _LogGuard | None = None
        self._closing = False
        self._stop = asyncio.Event()
        self._stopped = asyncio.Event()
        self._running = False

    # -- start-up -------------------------------------------------------------------------

    @property
    def tags(self) -> dict[str, int]:
        """Destination tags and how many services each has (no URLs)."""
        return {tag: len(services) for tag, services in self._by_tag.items()}

    async def start(self) -> None:
        """Load destinations and rules (ConfigError on a bad one) and the persisted dedup keys."""
        if self._guard is None:
            self._guard = _LogGuard.install(self.redact)
        raw = [url.get_secret_value() for url in self._settings.apprise_urls]
        self.redact.add(s for url in raw for s in url_secrets(url))
        try:
            services = self._load_services(raw, self._settings.apprise_config)
            self._rules = self._load_rules(self._settings.alert_rules)
        except ConfigError:
            self._guard.remove()
            self._guard = None
            raise
        found = [s for service in services for s in url_secrets(_service_url(service))]
        self.redact.add(found)
        logs.SECRETS.add(found)  # the config file's tokens: masked in the exporter's log too
        for index, service in enumerate(services):
            tags = tuple(sorted({str(tag).lower() for tag in service.tags})) or (UNTAGGED,)
            one = apprise.Apprise()
            one.add(service)
            entry = _Service(
                name=f"{_service_url(service).split('://', 1)[0]}#{index}",
                tags=tags,
                apprise=one,
                queue=asyncio.Queue(self._queue_size),
            )
            self._services.append(entry)
            for tag in tags:
                self._by_tag.setdefault(tag, []).append(entry)
        self._by_tag = dict(sorted(self._by_tag.items()))
        for tag in self._rules.routes:
            if tag not in self._by_tag:
                log.warning("notifier: the alert rules name tag %r but no destination has it", tag)
        self._claimed = set(await self._store.read(_load_keys))
        log.info(
            "notifier: %d destination(s) by tag %s; %d dedup keys loaded",
            len(self._services),
            self.tags or "{}",
            len(self._claimed),
        )

    def _load_services(self, urls: Sequence[str], config: Path | None) -> list[Any]:
        _load_plugins()
        problems: list[str] = []
        services: list[Any] = []
        for index, url in enumerate(urls, start=1):
            one = apprise.Apprise()
            if not one.add(url):
                scheme = url.split("://", 1)[0]
                problems.append(
                    f"{flag('apprise_urls')} / {env_name('apprise_urls')}: URL #{index} "
                    f"({scheme}://***) is not a valid Apprise URL"
                )
            services.extend(one.find())
        if config is not None:
            source = apprise.AppriseConfig()
            found = source.add(str(config)) and source.services()
            if not found:
                problems.append(
                    f"{flag('apprise_config')} / {env_name('apprise_config')}: {config} "
                    "defines no valid Apprise URL"
                )
            services.extend(found or ())
        if problems:
            raise ConfigError("\n".join(problems))
        return services

    @staticmethod
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

    # -- intake -----------------------------------------------------------------------------

    def submit(self, event: Event) -> None:
        """Queue an event for the dispatcher. O(1); never blocks, never raises."""
        if self._closing or not self._services:
            return
        try:
            self._inbox.put_nowait(event)
        except asyncio.QueueFull:
            self._metrics.notify_failed.inc()
            throttled.warning(
                "inbox",
                "notifier: queue full (%d events); dropping notifications",
                self._queue_size,
            )
            return
        except Exception:  # submit must never break detection
            log.exception("notifier: cannot queue a %s event", event.kind)
            return
        self._update_gauge()

    # -- serve ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the dispatcher, one worker per service and the recorder until close()."""
        if self._stopped.is_set():
            return
        self._running = True
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self._dispatch_loop(), name="notify-dispatch"),
                    group.create_task(self._record_loop(), name="notify-record"),
                ]
                tasks += [
                    group.create_task(self._service_loop(s), name=f"notify-{s.name}")
                    for s in self._services
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
                    await self._inbox.join()
                    for tag, window in list(self._windows.items()):
                        self._flush_digest(tag, window)
                    for service in self._services:
                        await service.queue.join()
                    await self._records.join()
            except TimeoutError:
                log.warning(
                    "notifier: %d notification(s) still queued after %.1f s; dropping them",
                    self._queued(),
                    timeout,
                )
            self._stop.set()
            await self._stopped.wait()
        else:
            self._stop.set()
            self._stopped.set()
        for window in self._windows.values():
            if window.timer is not None:
                window.timer.cancel()
        if self._guard is not None:
            self._guard.remove()
            self._guard = None

    # -- Alertmanager -------------------------------------------------------------------------

    async def relay(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Deliver an Alertmanager webhook (v4) to the services tagged `oncall`.

        Raises ValueError on an invalid payload. Waits for delivery (with retries); the
        result counts deliveries and never holds a URL.
        """
        group = relay_format.parse(payload)
        built = relay_format.messages(group)
        services = self._by_tag.get(RELAY_TAG, [])
        outgoing = [
            Outgoing(RELAY_TAG, "alertmanager", m.title, m.body, m.notify_type) for m in built
        ]
        results = await asyncio.gather(
            *(self._deliver(service, out) for out in outgoing for service in services)
        )
        if not services:
            log.warning(
                "notifier: Alertmanager payload received but no destination is tagged %r", RELAY_TAG
            )
        delivered = sum(1 for ok in results if ok)
        return {
            "status": group.status,
            "alerts": len(group.alerts),
            "messages": len(outgoing),
            "destinations": len(services),
            "relayed": delivered,
            "failed": len(results) - delivered,
        }

    # -- dispatch -----------------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while True:
            event = await self._inbox.get()
            try:
                self._dispatch(event)
            except Exception:
                self._metrics.notify_failed.inc()
                log.exception("notifier: cannot route a %s event", event.kind.value)
            finally:
                self._inbox.task_done()
                self._update_gauge()

    def _dispatch(self, event: Event) -> None:
        notice = notice_for(event)
        if notice is None:
            return
        signal = notice.signal
        reached: set[int] = set()
        rendered: message.Message | None = None
        for tag, services in self._by_tag.items():
            new_sent = dedup_key(tag, NoticeKind.NEW, signal.chain_id) in self._claimed
            verdict = decide(self._rules.rule(tag), notice, new_was_sent=new_sent)
            if verdict is Verdict.SKIP:
                continue
            if verdict is Verdict.FILTER:
                self._metrics.notify_suppressed.labels("filter").inc()
                continue
            if self._is_duplicate(tag, notice):
                self._metrics.notify_suppressed.labels("dedup").inc()
                continue
            self._claim(dedup_key(tag, notice.kind, signal.chain_id, notice.key), notice)
            targets = [s for s in services if id(s) not in reached]
            reached.update(id(s) for s in targets)
            if not targets:
                continue
            if rendered is None:
                rendered = message.render(notice, self._settings.explorer_tx_url)
            out = Outgoing(
                tag,
                notice.kind.value,
                rendered.title,
                rendered.body,
                NOTIFY_TYPE[notice.kind],
                ((signal.chain_id, signal.txid),),
            )
            self._route(out, targets, notice)

    def _is_duplicate(self, tag: str, notice: Notice) -> bool:
        signal = notice.signal
        if notice.kind is NoticeKind.NEW:
            # A replacement is never a second new whale: any member of the chain counts.
            return any(
                dedup_key(tag, NoticeKind.NEW, txid) in self._claimed
                for txid in {signal.chain_id, signal.txid, *signal.chain}
            )
        return dedup_key(tag, notice.kind, signal.chain_id, notice.key) in self._claimed

    def _claim(self, key: str, notice: Notice) -> None:
        self._claimed.add(key)
        self._records.put_nowait(
            ("key", key, notice.signal.chain_id, notice.kind.value, self._clock())
        )

    def _route(self, out: Outgoing, targets: list[_Service], notice: Notice) -> None:
        """Send now, or fold into the tag's digest past the per-minute limit."""
        now = self._clock()
        window = self._windows.get(out.tag)
        if window is None or now >= window.start + self._window:
            if window is not None:
                self._flush_digest(out.tag, window)
            window = self._windows[out.tag] = _Window(now)
        if window.sent < self._settings.notify_rate_per_minute:
            window.sent += 1
            self._enqueue(out, targets)
            return
        self._metrics.notify_suppressed.labels("rate_limit").inc()
        window.folded.append(
            (message.line(notice, self._settings.explorer_tx_url), out.items, targets)
        )
        if window.timer is None:
            loop = asyncio.get_running_loop()
            wait = max(window.start + self._window - now, 0.0)
            window.timer = loop.call_later(wait, self._flush_digest, out.tag, window)

    def _flush_digest(self, tag: str, window: _Window) -> None:
        if window.timer is not None:
            window.timer.cancel()
            window.timer = None
        if not window.folded:
            return
        folded, window.folded = window.folded, []
        targets: list[_Service] = []
        for _, _, services in folded:
            targets += [s for s in services if s not in targets]
        text = message.digest(
            [line for line, _, _ in folded],
            limit=self._settings.notify_rate_per_minute,
            window=self._window,
        )
        items = tuple(item for _, group, _ in folded for item in group)
        self._enqueue(
            Outgoing(tag, "digest", text.title, text.body, NotifyType.INFO, items), targets
        )

    def _enqueue(self, out: Outgoing, targets: Iterable[_Service]) -> None:
        for service in targets:
            try:
                service.queue.put_nowait(out)
            except asyncio.QueueFull:
                self._metrics.notify_failed.inc()
                throttled.warning(
                    service.name,
                    "notifier: %s (tag %s) is %d messages behind; dropping messages",
                    service.name,
                    out.tag,
                    self._queue_size,
                )
        self._update_gauge()

    # -- delivery -----------------------------------------------------------------------------

    async def _service_loop(self, service: _Service) -> None:
        while True:
            out = await service.queue.get()
            try:
                await self._deliver(service, out)
            except Exception as exc:
                self._metrics.notify_failed.inc()
                log.error(
                    "notifier: %s delivery to %s crashed: %s",
                    out.kind,
                    service.name,
                    self.redact(repr(exc)),
                )
            finally:
                service.queue.task_done()
                self._update_gauge()

    async def _deliver(self, service: _Service, out: Outgoing) -> bool:
        """Send with a timeout per attempt and exponential backoff; record every attempt."""
        attempts = self._settings.notify_retries + 1
        error: str | None = None
        for attempt in range(1, attempts + 1):
            if self._on_send_start is not None:
                self._on_send_start(out)
            started = time.perf_counter()
            ok, error, again = await self._send_once(service, out)
            self._metrics.notify_duration.observe(time.perf_counter() - started)
            if ok:
                self._metrics.notify_sent.inc()
                self._record_delivery(out, attempt, "sent", None)
                return True
            if again and attempt < attempts:
                self._record_delivery(out, attempt, "retry", error)
                log.debug(
                    "notifier: %s to %s attempt %d failed: %s",
                    out.kind,
                    service.name,
                    attempt,
                    error,
                )
                await self._delay(backoff(attempt))
                continue
            self._record_delivery(out, attempt, "failed", error)
            break
        self._metrics.notify_failed.inc()
        log.warning(
            "notifier: %s to tag %s (%s) failed after %d attempt(s): %s",
            out.kind,
            out.tag,
            service.name,
            attempt,
            error,
        )
        return False

    async def _send_once(self, service: _Service, out: Outgoing) -> tuple[bool, str | None, bool]:
        """One Apprise call: (delivered, redacted error, worth retrying)."""
        timeout = self._settings.notify_timeout
        try:
            async with asyncio.timeout(timeout):
                result = await service.apprise.async_notify(
                    body=out.body,
                    title=out.title,
                    notify_type=out.notify_type,
                    body_format=NotifyFormat.MARKDOWN,
                )
        except TimeoutError:
            return False, f"timed out after {timeout:g} s", True
        except Exception as exc:
            return False, self._clip(f"{type(exc).__name__}: {exc}"), True
        if result is None:
            return False, "no destination matched", False
        if bool(result):
            return True, None, False
        status = getattr(result, "status", None)
        name = getattr(status, "name", "FAILURE")
        if name == "NOMATCH":
            return False, "no destination matched", False
        lines = [
            entry.message
            for entry in getattr(result, "logs", lambda: ())()
            if getattr(entry, "level", "") in ("WARNING", "ERROR", "CRITICAL")
        ]
        return False, self._clip(f"{name}: " + (" | ".join(lines) or "delivery failed")), True

    def _clip(self, text: str) -> str:
        clean = self.redact(text)
        return clean if len(clean) <= MAX_ERROR else clean[: MAX_ERROR - 1] + "…"

    # -- records ------------------------------------------------------------------------------

    def _record_delivery(self, out: Outgoing, attempt: int, result: str, error: str | None) -> None:
        now = self._clock()
        for chain_id, txid in out.items or ((None, None),):
            self._records.put_nowait(
                ("delivery", now, chain_id, txid, out.tag, out.kind, attempt, result, error)
            )

    async def _record_loop(self) -> None:
        while True:
            batch = [await self._records.get()]
            while not self._records.empty():
                batch.append(self._records.get_nowait())
            try:
                await self._store.write(_insert_records, batch)
            except Exception as exc:
                log.warning(
                    "notifier: cannot store %d notification record(s): %s",
                    len(batch),
                    self.redact(repr(exc)),
                )
            finally:
                for _ in batch:
                    self._records.task_done()

    # -- gauges -------------------------------------------------------------------------------

    def _queued(self) -> int:
        return self._inbox.qsize() + sum(service.queue.qsize() for service in self._services)

    def _update_gauge(self) -> None:
        self._metrics.notify_queue.set(self._queued())


_Record = tuple[Any, ...]


def _service_url(service: Any) -> str:
    try:
        return str(service.url())
    except Exception:
        return "apprise://"


def _load_plugins() -> None:
    """Import Apprise's plugins once, up front: some import deprecated modules (imghdr)."""
    from apprise.manager_plugins import NotificationManager

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        NotificationManager().load_modules()  # type: ignore[no-untyped-call]


def _load_keys(cursor: Connection) -> list[str]:
    return [row[0] for row in cursor.execute("SELECT dedup_key FROM notifications").fetchall()]


def _insert_records(con: Connection, batch: Sequence[_Record]) -> None:
    keys = [record[1:] for record in batch if record[0] == "key"]
    deliveries = [record[1:] for record in batch if record[0] == "delivery"]
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        con.execute(
            "INSERT OR IGNORE INTO notifications (dedup_key, chain_id, kind, created_at) VALUES "
            + ", ".join(["(?, ?, ?, ?)"] * len(chunk)),
            [value for row in chunk for value in row],
        )
    for start in range(0, len(deliveries), 500):
        chunk = deliveries[start : start + 500]
        con.execute(
            "INSERT INTO deliveries "
            "(sent_at, chain_id, txid, tag, kind, attempt, result, error) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk)),
            [value for row in chunk for value in row],
        )


__all__ = ["Notifier", "Outgoing", "backoff"]
