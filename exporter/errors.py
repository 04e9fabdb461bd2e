"""The exporter's error tree.

Library exceptions are translated at the boundary into these, and `is_transient` is the one
place that decides whether an operation is worth retrying.
"""

from __future__ import annotations

from exporter.core.errors import DecodeError

__all__ = [
    "ConfigError",
    "DecodeError",
    "ExporterError",
    "NotFound",
    "RateLimited",
    "StoreUnavailable",
    "UpstreamError",
]


class ExporterError(Exception):
    """Base of every error the exporter raises on purpose."""


class ConfigError(ExporterError):
    """A setting is invalid; the message names the flag and the environment variable."""


class StoreUnavailable(ExporterError):
    """The store cannot answer now (its disk or DuckDB fails); the message says why."""


class UpstreamError(ExporterError):
    """The mempool instance answered badly or not at all."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotFound(UpstreamError):
    """The instance answered 404 (an unknown transaction, for example)."""


class RateLimited(UpstreamError):
    """The instance answered 429; `retry_after` is its hint in seconds, when given."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, status=429)
        self.retry_after = retry_after


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the operation that raised `exc` can succeed."""
    if isinstance(exc, NotFound | ConfigError | DecodeError):
        return False
    if isinstance(exc, UpstreamError):
        return exc.status is None or exc.status == 429 or exc.status >= 500
    return isinstance(exc, OSError | TimeoutError)
