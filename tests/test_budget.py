"""The REST budget: a token bucket that a 429 pauses."""

from __future__ import annotations

from exporter.shell.budget import Budget


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_tokens_refill_at_the_rate_up_to_the_burst() -> None:
    """Spent tokens come back at `rate` per second and never beyond the burst."""
    clock = Clock()
    budget = Budget(2.0, burst=2, clock=clock)
    await budget.acquire()
    await budget.acquire()
    assert budget.available() == 0
    clock.now += 0.5
    assert budget.available() == 1.0
    clock.now += 100
    assert budget.available() == 2.0


async def test_a_429_pauses_every_request_until_retry_after() -> None:
    """After `pause`, nothing is available until the pause is over, then tokens refill."""
    clock = Clock()
    budget = Budget(10.0, clock=clock)
    budget.pause(30)
    clock.now += 29
    assert budget.available() == 0
    clock.now += 2
    assert budget.available() > 0
