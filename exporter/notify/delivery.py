"""Delivery: destinations (Apprise services, signed webhooks), one attempt, retries, timeouts.

A destination's `send(out, timeout)` makes one attempt and says whether it worked and whether
another attempt may. `Delivery.deliver` retries with exponential backoff and records every
attempt. URLs carry tokens: they live only inside the destination objects; names are
`scheme#index`. While the notifier runs, Apprise's, urllib3's and httpx's loggers are raised to
WARNING and pass through a redacting filter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import apprise
from apprise import NotifyFormat

from exporter import logs
from exporter.config import env_name, flag
from exporter.errors import ConfigError
from exporter.metrics import Metrics
from exporter.notify.outgoing import Outgoing
from exporter.notify.rules import UNTAGGED
from exporter.redact import RedactingFilter, Redactor, url_secrets

log = logging.getLogger(__name__)

GUARDED_LOGGERS = ("apprise", "urllib3", "urllib3.connectionpool", "requests", "httpx", "httpcore")
QUIET_LOGGERS = ("apprise", "urllib3", "httpx", "httpcore")
BACKOFF_BASE = 1.0
BACKOFF_MAX = 60.0
MAX_ERROR = 500
Delay = Callable[[float], Awaitable[Any]]
Recorder = Callable[[Outgoing, int, str, str | None], None]  # (out, attempt, result, error)


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (1, 2, 4, ... up to a minute)."""
    return float(min(BACKOFF_BASE * 2 ** (attempt - 1), BACKOFF_MAX))


@dataclass(frozen=True, slots=True)
class Attempt:
    """The result of one send: delivered, a redacted error, and whether to try again."""

    ok: bool
    error: str | None = None
    again: bool = False


class Destination(Protocol):
    name: str  # scheme#index: never a URL
    tags: tuple[str, ...]

    async def send(self, out: Outgoing, timeout: float) -> Attempt: ...  # noqa: ASYNC109


def clip(redact: Redactor, text: str) -> str:
    clean = redact(text)
    return clean if len(clean) <= MAX_ERROR else clean[: MAX_ERROR - 1] + "…"


# --- Apprise ------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class AppriseDestination:
    """One Apprise service."""

    name: str
    tags: tuple[str, ...]
    apprise: apprise.Apprise
    redact: Redactor

    async def send(self, out: Outgoing, timeout: float) -> Attempt:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                result = await self.apprise.async_notify(
                    body=out.body,
                    title=out.title,
                    notify_type=out.notify_type,
                    body_format=NotifyFormat.MARKDOWN,
                )
        except TimeoutError:
            return Attempt(False, f"timed out after {timeout:g} s", True)
        except Exception as exc:
            return Attempt(False, clip(self.redact, f"{type(exc).__name__}: {exc}"), True)
        if result is None:
            return Attempt(False, "no destination matched")
        if bool(result):
            return Attempt(True)
        status = getattr(result, "status", None)
        name = getattr(status, "name", "FAILURE")
        if name == "NOMATCH":
            return Attempt(False, "no destination matched")
        lines = [
            entry.message
            for entry in getattr(result, "logs", lambda: ())()
            if getattr(entry, "level", "") in ("WARNING", "ERROR", "CRITICAL")
        ]
        text = f"{name}: " + (" | ".join(lines) or "delivery failed")
        return Attempt(False, clip(self.redact, text), True)


def load_apprise(
    urls: Sequence[str], config: Path | None, redact: Redactor
) -> list[AppriseDestination]:
    """One destination per Apprise service of `urls` and the config file.

    Raises ConfigError with one line per problem, naming the setting, never a secret.
    """
    _load_plugins()
    problems: list[str] = []
    services: list[Any] = []
    with _silenced("apprise"):  # its own "Unparseable URL" line would be a second line
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
    destinations = []
    for index, service in enumerate(services):
        url = service_url(service)
        secrets = url_secrets(url)
        redact.add(secrets)
        logs.SECRETS.add(secrets)  # the config file's tokens: masked in the exporter's log too
        tags = tuple(sorted({str(tag).lower() for tag in service.tags})) or (UNTAGGED,)
        one = apprise.Apprise()
        one.add(service)
        name = f"{url.split('://', 1)[0]}#{index}"
        destinations.append(AppriseDestination(name, tags, one, redact))
    return destinations


def service_url(service: Any) -> str:
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


@contextlib.contextmanager
def _silenced(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    saved = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = saved


# --- log guard ------------------------------------------------------------------------------


@dataclass(slots=True)
class LogGuard:
    """Redacts (and quiets) the loggers of the libraries that see URLs, while installed."""

    filter: RedactingFilter
    levels: dict[str, int] = field(default_factory=dict)

    @classmethod
    def install(cls, redact: Redactor, *extra: str) -> LogGuard:
        guard = cls(RedactingFilter(redact))
        for name in (*GUARDED_LOGGERS, *extra):
            logging.getLogger(name).addFilter(guard.filter)
        for name in QUIET_LOGGERS:
            logger = logging.getLogger(name)
            if logger.getEffectiveLevel() < logging.WARNING:
                guard.levels[name] = logger.level
                logger.setLevel(logging.WARNING)
        return guard

    def remove(self, *extra: str) -> None:
        for name in (*GUARDED_LOGGERS, *extra):
            logging.getLogger(name).removeFilter(self.filter)
        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)


# --- retries --------------------------------------------------------------------------------


class Delivery:
    """Sends one message to one destination: a timeout per attempt, backoff between attempts.

    `record(out, attempt, result, error)` is told of every attempt ("sent", "retry",
    "failed"); `on_send_start(out)` runs just before each attempt (the latency probe).
    """

    def __init__(
        self,
        metrics: Metrics,
        record: Recorder,
        *,
        retries: int,
        timeout: float,
        delay: Delay = asyncio.sleep,
        on_send_start: Callable[[Outgoing], None] | None = None,
    ) -> None:
        self._metrics = metrics
        self._record = record
        self.retries = retries
        self.timeout = timeout
        self._delay = delay
        self._on_send_start = on_send_start

    async def deliver(
        self, dest: Destination, out: Outgoing, *, retries: int | None = None
    ) -> Attempt:
        """Try up to `retries` + 1 times; the last attempt's result."""
        attempts = (self.retries if retries is None else retries) + 1
        result = Attempt(False, "not attempted")
        for attempt in range(1, attempts + 1):
            if self._on_send_start is not None:
                self._on_send_start(out)
            started = time.perf_counter()
            try:
                result = await dest.send(out, self.timeout)
            except Exception as exc:  # a destination's bug must not stop its worker
                log.exception("notifier: %s send to %s crashed", out.kind, dest.name)
                result = Attempt(False, f"crashed: {type(exc).__name__}", True)
            self._metrics.notify_duration.observe(time.perf_counter() - started)
            if result.ok:
                self._metrics.notify_sent.inc()
                self._record(out, attempt, "sent", None)
                return result
            if result.again and attempt < attempts:
                self._record(out, attempt, "retry", result.error)
                log.debug(
                    "notifier: %s to %s attempt %d failed: %s",
                    out.kind, dest.name, attempt, result.error,
                )  # fmt: skip
                await self._delay(backoff(attempt))
                continue
            self._record(out, attempt, "failed", result.error)
            break
        self._metrics.notify_failed.inc()
        return result
