"""The WebSocket client: connect, subscribe, keep alive, notice silence, reconnect.

It knows nothing of whales: every frame goes to `on_frame` with its receive time. The delay
schedule is injected, so tests reconnect fast; every (re)connect re-sends the subscriptions,
because the server forgets them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidURI, WebSocketException

from exporter.core.frames import PING, SUBSCRIPTIONS, encode

log = logging.getLogger(__name__)
FAILED_AFTER = 5  # consecutive failed attempts before the state says "failed"


class StaleStream(Exception):
    """No frame arrived for too long, or a ping went unanswered."""


@dataclass(frozen=True, slots=True)
class StreamOptions:
    url: str
    ping_interval: float = 30.0  # silence before we ping (the server sends no heartbeat)
    pong_timeout: float = 10.0
    stale_after: float = 90.0
    max_frame_bytes: int = 256 * 2**20  # frames after a resync can carry the whole mempool
    open_timeout: float = 15.0
    healthy_after: float = 30.0  # a connection this old resets the backoff when it ends


def backoff_schedule(
    min_delay: float, max_delay: float, rand: Callable[[], float] = random.random
) -> Callable[[int], float]:
    """Exponential backoff with jitter, never below `min_delay` (attempt 0 is the first retry)."""

    def delay(attempt: int) -> float:
        ceiling = min(max_delay, max(min_delay, 0.5) * 2.0 ** min(attempt, 30))
        return max(min_delay, ceiling * (0.5 + rand() / 2))

    return delay


class StreamClient:
    def __init__(
        self,
        options: StreamOptions,
        on_frame: Callable[[str | bytes, float], Awaitable[None]],
        *,
        on_state: Callable[[str], None] = lambda state: None,
        on_connected: Callable[[], Awaitable[None]] | None = None,
        backoff: Callable[[int], float] | None = None,
        subscriptions: Sequence[dict[str, Any]] = SUBSCRIPTIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self._on_frame = on_frame
        self._on_state = on_state
        self._on_connected = on_connected
        self._backoff = backoff or backoff_schedule(1.0, 60.0)
        self._subscriptions = subscriptions
        self._clock = clock
        self.last_frame_at: float | None = None  # monotonic
        self.connected = False

    async def run(self) -> None:
        """Connect and read until cancelled; reconnect after any failure.

        The backoff restarts only after a connection stayed up `healthy_after` seconds: a
        server that accepts and closes at once is retried ever more slowly, not at once.
        """
        failures = 0
        self._on_state("connecting")
        while True:
            opened_at: float | None = None
            try:
                async with connect(
                    self.options.url,
                    max_size=self.options.max_frame_bytes,
                    max_queue=4,
                    ping_interval=None,  # the server ignores protocol pings; we ping in JSON
                    open_timeout=self.options.open_timeout,
                    close_timeout=2,
                    user_agent_header="mempool-whale-exporter",
                ) as ws:
                    opened_at = self._clock()
                    await self._session(ws)
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, WebSocketException, StaleStream) as exc:
                reason = _describe(exc)
            finally:
                self.connected = False
            if opened_at is not None and self._clock() - opened_at >= self.options.healthy_after:
                failures = 0
            failures += 1
            state = "failed" if failures >= FAILED_AFTER else "reconnecting"
            delay = self._backoff(failures - 1)
            log.warning("stream %s (%s); reconnecting in %.1fs", state, reason, delay)
            self._on_state(state)
            await asyncio.sleep(delay)
            self._on_state("connecting")

    async def _session(self, ws: ClientConnection) -> None:
        for message in self._subscriptions:
            await ws.send(encode(message))
        self.connected = True
        self.last_frame_at = self._clock()
        self._on_state("connected")
        log.info("stream connected to %s", self.options.url)
        if self._on_connected is not None:
            await self._on_connected()
        pinged_at: float | None = None
        while True:
            last = self.last_frame_at
            deadline = last + self.options.stale_after
            if pinged_at is not None:
                deadline = min(deadline, pinged_at + self.options.pong_timeout)
            else:
                deadline = min(deadline, last + self.options.ping_interval)
            try:
                async with asyncio.timeout(max(deadline - self._clock(), 0.01)):
                    raw = await ws.recv()
            except TimeoutError:
                now = self._clock()
                silent = now - last
                if silent >= self.options.stale_after or pinged_at is not None:
                    raise StaleStream(f"no frame for {silent:.0f}s") from None
                await ws.send(encode(PING))
                pinged_at = now
                continue
            self.last_frame_at = self._clock()
            pinged_at = None
            await self._on_frame(raw, time.time())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, InvalidURI | InvalidHandshake):
        return f"handshake failed: {exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
