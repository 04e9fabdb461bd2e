"""Logging helpers."""

from __future__ import annotations

import logging

import pytest

from exporter.logs import Throttled


def test_recurring_warnings_are_throttled(caplog: pytest.LogCaptureFixture) -> None:
    """A warning repeated within the interval is logged once, then reported with a count."""
    throttled = Throttled(logging.getLogger("test.throttle"), interval=3600)
    with caplog.at_level(logging.WARNING, logger="test.throttle"):
        for n in range(5):
            throttled.warning("frame", "bad frame %d", n)
        throttled.interval = 0
        throttled.warning("frame", "bad frame %d", 99)
    assert [r.getMessage() for r in caplog.records] == [
        "bad frame 0", "bad frame 99 (4 more like it since the last report)"]  # fmt: skip
