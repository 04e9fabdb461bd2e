"""Prediction accuracy over sliding windows of resolution time, kept in memory.

Each resolved prediction is a sample (hit or miss) stamped with its resolution time. Windows
keep running totals, so adding, correcting and sliding are cheap, and a scrape reads numbers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

WINDOWS = {"1h": 3_600.0, "24h": 86_400.0, "7d": 604_800.0}
MAX_SAMPLES = 200_000  # far above 7 days of whales (~1,600 a day); a hard bound on memory


@dataclass(slots=True)
class _Sample:
    at: float
    hit: bool
    alive: bool = True


class _Window:
    def __init__(self, span: float) -> None:
        self.span = span
        self.samples: deque[_Sample] = deque()
        self.hits = 0
        self.count = 0
        self.cutoff = float("-inf")

    def add(self, sample: _Sample) -> None:
        if sample.at < self.cutoff:
            return
        position = len(self.samples)
        while position and self.samples[position - 1].at > sample.at:
            position -= 1  # late arrivals (outcomes found after an outage) are rare and recent
        self.samples.insert(position, sample)
        self.count += 1
        self.hits += sample.hit

    def retract(self, sample: _Sample) -> None:
        if sample.alive and sample.at >= self.cutoff:
            self.count -= 1
            self.hits -= sample.hit

    def advance(self, now: float) -> None:
        self.cutoff = now - self.span
        samples = self.samples
        while samples and (samples[0].at < self.cutoff or len(samples) > MAX_SAMPLES):
            sample = samples.popleft()
            if sample.alive:
                self.count -= 1
                self.hits -= sample.hit


class Accuracy:
    """Accuracy per window; `record` again for the same chain replaces its earlier sample."""

    def __init__(self) -> None:
        self._windows = {name: _Window(span) for name, span in WINDOWS.items()}
        self._latest: dict[str, _Sample] = {}

    def record(self, chain_id: str, at: float, hit: bool | None) -> None:
        """Count a resolution; `hit=None` withdraws the chain's sample (not a prediction test)."""
        previous = self._latest.pop(chain_id, None)
        if previous is not None:
            for window in self._windows.values():
                window.retract(previous)
            previous.alive = False
        if hit is None:
            return
        sample = _Sample(at, hit)
        self._latest[chain_id] = sample
        for window in self._windows.values():
            window.add(sample)

    def advance(self, now: float) -> None:
        """Slide every window to `now` and forget samples older than the longest window."""
        for window in self._windows.values():
            window.advance(now)
        horizon = now - max(WINDOWS.values())
        stale = [key for key, sample in self._latest.items() if sample.at < horizon]
        for key in stale:
            del self._latest[key]

    def snapshot(self) -> dict[str, tuple[float | None, int]]:
        """window -> (ratio of hits, or None without samples; number of samples)."""
        return {
            name: (window.hits / window.count if window.count else None, window.count)
            for name, window in self._windows.items()
        }
