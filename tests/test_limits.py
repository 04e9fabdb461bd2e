"""Rate limits, body limits, connection caps and timeouts, over real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import uvicorn
from conftest import Exporter, StartExporter
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from support import wait_for

from exporter.metrics import Metrics
from exporter.shell.http.protocol import deadline_protocol
from exporter.shell.http.ratelimit import RateLimiter
from exporter.sim.mempool import SimulatedMempool

TOKENS = ["flood-token-aaaaaaaaaaaaaaaa", "calm-token-bbbbbbbbbbbbbbbbb"]


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_flood_past_the_limit_gets_429_never_5xx(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """A burst well past the limit gets 429 with Retry-After; another token is unaffected."""
    exporter = await start_exporter(sim.url, api_tokens=TOKENS, api_rate_limit=1, api_rate_burst=5)
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(base_url=exporter.base, limits=limits, timeout=30) as flood:
        answers = await asyncio.gather(
            *(flood.get("/api/v1/whales", headers=bearer(TOKENS[0])) for _ in range(80))
        )
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {200: 5, 429: 75}, statuses
    assert all(int(a.headers["retry-after"]) >= 1 for a in answers if a.status_code == 429)
    rejected = await exporter.scraped("whale_http_rejected_requests_total", reason="rate_limited")
    assert rejected == statuses[429]
    calm = await exporter.http.get("/api/v1/summary", headers=bearer(TOKENS[1]))
    assert calm.status_code == 200
    metrics = await exporter.http.get("/metrics")  # Prometheus is never rate limited
    assert metrics.status_code == 200


async def test_guessing_tokens_is_rate_limited_per_client_address(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """Without a valid token the bucket is the client's address: wrong guesses get 401, then 429."""
    exporter = await start_exporter(
        sim.url, api_tokens=TOKENS, api_rate_limit=0.001, api_rate_burst=3
    )
    answers = [
        await exporter.http.get("/api/v1/whales", headers=bearer(f"guess-{i:020d}"))
        for i in range(10)
    ]
    assert Counter(a.status_code for a in answers) == {401: 3, 429: 7}
    valid = await exporter.http.get("/api/v1/whales", headers=bearer(TOKENS[0]))
    assert valid.status_code == 200  # a token has its own bucket


def test_token_bucket_refills_at_the_rate() -> None:
    """The bucket allows the burst, then one request per 1/rate seconds; the table is bounded."""
    now = [0.0]
    limiter = RateLimiter(2.0, 3, max_keys=2, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == 0.5
    now[0] += 0.5
    assert limiter.take("a") == 0.0
    for key in ("b", "c", "d"):
        limiter.take(key)
    assert len(limiter) == 2


async def test_bodies_over_one_mebibyte_get_413(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """A declared or streamed body over 1 MiB is refused with 413, not read into memory."""
    exporter = await start_exporter(sim.url)
    big = b"x" * (1 << 20 | 1)
    declared = await exporter.http.post("/alertmanager", content=big)
    assert declared.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"y" * 65_536

    streamed = await exporter.http.post("/alertmanager", content=chunks())
    assert streamed.status_code == 413
    assert (
        await exporter.scraped("whale_http_rejected_requests_total", reason="body_too_large") == 2
    )


async def open_idle(exporter: Exporter, count: int) -> list[asyncio.StreamWriter]:
    port = int(exporter.base.rsplit(":", 1)[1])
    writers = []
    for _ in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
    return writers


async def close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()
    for writer in writers:
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_500_idle_connections_do_not_stop_metrics(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """With 500 connections open and silent, /metrics and the API still answer."""
    exporter = await start_exporter(sim.url, http_timeout=120)
    idle = await open_idle(exporter, 500)
    try:
        metrics = await exporter.http.get("/metrics")
        assert metrics.status_code == 200
        assert "whale_http_rejected_requests_total" in metrics.text
        assert (await exporter.http.get("/api/v1/summary")).status_code == 200
        assert not any(w.is_closing() for w in idle)
    finally:
        await close_all(idle)


async def test_connections_beyond_the_cap_get_503(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """--max-connections caps open connections: one more request gets 503, not a hang."""
    exporter = await start_exporter(sim.url, max_connections=8, http_timeout=120)
    idle = await open_idle(exporter, 8)
    try:
        async with httpx.AsyncClient(base_url=exporter.base, timeout=10) as fresh:
            assert (await fresh.get("/healthz")).status_code == 503
    finally:
        await close_all(idle)
    async with httpx.AsyncClient(base_url=exporter.base, timeout=10) as fresh:
        assert (await fresh.get("/healthz")).status_code == 200


async def test_silent_and_slow_header_connections_are_closed(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """Silence, headers never finished, or a body that stalls: the server ends each one."""
    exporter = await start_exporter(sim.url, http_timeout=1)
    port = int(exporter.base.rsplit(":", 1)[1])
    silent_reader, silent = await asyncio.open_connection("127.0.0.1", port)
    slow_reader, slow = await asyncio.open_connection("127.0.0.1", port)
    slow.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
    await slow.drain()
    body_reader, stalled = await asyncio.open_connection("127.0.0.1", port)
    stalled.write(b"POST /alertmanager HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    await stalled.drain()
    try:
        assert await asyncio.wait_for(silent_reader.read(), 20) == b""
        assert await asyncio.wait_for(slow_reader.read(), 20) == b""
        answer = await asyncio.wait_for(body_reader.readline(), 20)
        assert answer.startswith(b"HTTP/1.1 408"), answer
    finally:
        await close_all([silent, slow, stalled])
    assert await exporter.scraped("whale_http_rejected_requests_total", reason="slow_client") == 1
    assert (await exporter.http.get("/healthz")).status_code == 200


async def test_a_client_that_stops_reading_is_aborted() -> None:
    """A response the client stops reading is given up after the timeout, unread bytes freed."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, process=False)

    async def endless(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            while True:
                yield b"x" * 65_536
                await asyncio.sleep(0)  # once aborted, sends return at once: let others run

        return StreamingResponse(body())

    config = uvicorn.Config(
        Starlette(routes=[Route("/", endless)]),
        log_config=None,
        lifespan="off",
        timeout_keep_alive=1,
        http=deadline_protocol(metrics.http_rejected.labels("slow_client").inc),
    )
    server = uvicorn.Server(config)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        reader, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        stalled = lambda: registry.get_sample_value(  # noqa: E731
            "whale_http_rejected_requests_total", {"reason": "slow_client"}
        )
        await wait_for(lambda: stalled() == 1, 30, "the stalled write to be given up")
        while await asyncio.wait_for(reader.read(1 << 20), 20):
            pass  # what the kernel buffered, then EOF: the server aborted the connection
        writer.close()
        server.should_exit = True
        await asyncio.wait_for(serving, 20)  # nothing left to wait for
