"""A REST budget: a token bucket shared by every request to one instance.

Polite to the public instance: at most `rate` requests a second on average (bursts up to
`burst`), and after a 429 nobody asks again before its `Retry-After` has passed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Budget:
    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(rate, 1.0)
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def _refill(self) -> float:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        return now

    async def acquire(self) -> None:
        """Wait for one request's token (and for any 429 pause to end)."""
        async with self._lock:  # one waiter at a time: requests go out in order
            while True:
                now = self._refill()
                wait = self._paused_until - now
                if wait <= 0 and self._tokens >= 1:
                    self._tokens -= 1
                    return
                if wait <= 0:
                    wait = (1 - self._tokens) / self.rate
                await asyncio.sleep(wait)

    def pause(self, seconds: float) -> None:
        """The instance said 429: nobody asks again for `seconds`."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)
        self._tokens = 0.0

    def available(self) -> float:
        """Requests that could go out now without waiting."""
        now = self._refill()
        return 0.0 if now < self._paused_until else self._tokens
