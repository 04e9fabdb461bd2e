"""Logging set-up: text or JSON lines on stderr, with every known secret masked."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime

import orjson

from exporter.redact import RedactingFilter, Redactor

# Every secret the process knows (Apprise URLs and their parts, tokens), masked in every line.
# URLs as such stay readable: the exporter's own URLs are public.
SECRETS = Redactor(mask_urls=False)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["error"] = record.exc_text
        return orjson.dumps(entry).decode()


def configure(level: str, fmt: str, secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    SECRETS.add(secrets)
    handler.addFilter(RedactingFilter(SECRETS))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that would log URLs (with tokens) or chatter at INFO stay quiet.
    for name in ("apprise", "httpx", "httpcore", "websockets", "uvicorn.access"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))


class Throttled:
    """Logs a recurring warning at most once per `interval` per key, counting the rest.

    Bad input can arrive with every frame; the counter metrics carry the rate, the log the
    first example and how many followed it.
    """

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(key, float("-inf")) < self.interval:
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return
        skipped = self._skipped.pop(key, 0)
        self._last[key] = now
        if skipped:
            message += f" ({skipped} more like it since the last report)"
        self.logger.warning(message, *args)
