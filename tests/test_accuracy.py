"""Accuracy windows: sliding, corrections and bounds."""

from __future__ import annotations

from exporter.core.accuracy import Accuracy

T0 = 1_700_000_000.0


def test_windows_slide_over_time() -> None:
    """Samples leave the 1h window after an hour and the 24h window after a day."""
    acc = Accuracy()
    acc.record("a", T0, True)
    acc.record("b", T0 + 1800, False)
    acc.advance(T0 + 1800)
    assert acc.snapshot()["1h"] == (0.5, 2)
    acc.advance(T0 + 3601)
    assert acc.snapshot()["1h"] == (0.0, 1)
    assert acc.snapshot()["24h"] == (0.5, 2)
    acc.advance(T0 + 86_400 + 1801)
    assert acc.snapshot()["24h"] == (None, 0)
    assert acc.snapshot()["7d"] == (0.5, 2)
    acc.advance(T0 + 8 * 86_400)
    assert acc.snapshot()["7d"] == (None, 0)


def test_correction_replaces_the_earlier_sample() -> None:
    """Recording the same chain again (dropped corrected to mined) counts it once."""
    acc = Accuracy()
    acc.record("a", T0, False)
    acc.record("a", T0 + 60, True)
    acc.advance(T0 + 60)
    assert acc.snapshot()["1h"] == (1.0, 1)
    acc.record("a", T0 + 120, None)  # reopened by a reorg: no sample
    assert acc.snapshot()["1h"] == (None, 0)


def test_late_samples_land_in_order() -> None:
    """A sample resolved earlier than the newest (found after an outage) slides out on time."""
    acc = Accuracy()
    acc.record("new", T0 + 3000, True)
    acc.record("old", T0, False)
    acc.advance(T0 + 3601)
    assert acc.snapshot()["1h"] == (1.0, 1)
