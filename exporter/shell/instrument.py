"""Measurements of the shell itself: REST requests (an httpx transport) and event-loop lag."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx

# (path, code, seconds): the path only, never the URL; `code` is the status or "error".
RestObserver = Callable[[str, str, float], None]


class ObservedTransport(httpx.AsyncBaseTransport):
    """Wraps a transport and reports every request to `observe`, retries included."""

    def __init__(self, observe: RestObserver, inner: httpx.AsyncBaseTransport) -> None:
        self._observe = observe
        self._inner = inner

    @classmethod
    def http(cls, observe: RestObserver, *, max_connections: int) -> ObservedTransport:
        """Over httpx's own HTTP transport (a client ignores its `limits` given a transport)."""
        limits = httpx.Limits(max_connections=max_connections)
        return cls(observe, httpx.AsyncHTTPTransport(limits=limits))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        try:
            response = await self._inner.handle_async_request(request)
        except Exception:  # a cancelled request is not an answer: not counted
            self._observe(request.url.path, "error", time.perf_counter() - started)
            raise
        self._observe(request.url.path, str(response.status_code), time.perf_counter() - started)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


async def watch_loop_lag(observe: Callable[[float], None], interval: float = 0.5) -> None:
    """Forever: sleep `interval` and report how much later than asked the loop woke us."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time()
        await asyncio.sleep(interval)
        observe(max(loop.time() - asked - interval, 0.0))
