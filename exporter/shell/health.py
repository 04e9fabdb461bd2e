"""Whether the store can write, told once per change: to the log, to metrics and to /readyz.

Two parts of the store can fail: appending to the journal (a full or read-only disk) and
loading the journal into DuckDB (DuckDB cannot write its WAL). Each reports every attempt
here. A failing part is retried with exponential backoff; the first failure logs one error,
the recovery one line, and nothing in between (the counters carry the rate).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from exporter.metrics import Metrics

log = logging.getLogger("exporter.shell.store")
MIN_RETRY = 0.25  # seconds after the first failure
MAX_RETRY = 30.0


class StoreHealth:
    def __init__(
        self, metrics: Metrics | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.metrics = metrics
        self._clock = clock
        self._problems: dict[str, str] = {}  # part -> what went wrong last
        self._failures: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}
        if metrics is not None:
            metrics.store_healthy.set(1)

    @property
    def problem(self) -> str | None:
        """Why the store cannot write now, or None when it can."""
        if not self._problems:
            return None
        return "; ".join(f"{part}: {reason}" for part, reason in self._problems.items())

    def due(self, part: str) -> bool:
        """Whether `part` may be tried now (always, unless it failed and backs off)."""
        return self._clock() >= self._retry_at.get(part, float("-inf"))

    def failed(self, part: str, exc: BaseException, backlog: int = 0) -> None:
        was = self.problem
        failures = self._failures.get(part, 0) + 1
        self._failures[part] = failures
        self._retry_at[part] = self._clock() + min(MAX_RETRY, MIN_RETRY * 2 ** (failures - 1))
        self._problems[part] = _describe(exc)
        if self.metrics is not None:
            self.metrics.store_errors.inc()
            self.metrics.store_healthy.set(0)
        if was is None:
            log.error(
                "store cannot write (%s); %d rows kept in memory, retrying with backoff",
                self.problem,
                backlog,
            )

    def succeeded(self, part: str) -> None:
        if part not in self._problems:
            return
        del self._problems[part]
        failures = self._failures.pop(part, 0)
        self._retry_at.pop(part, None)
        if not self._problems:
            if self.metrics is not None:
                self.metrics.store_healthy.set(1)
            log.info("store writes again (after %d failed attempts)", failures)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror  # "No space left on device": no paths, no errno noise
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
