"""The stream client and pipeline against scripted WebSocket servers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
import pytest
from conftest import StartExporter
from support import BTC, make_tx, wait_for
from websockets.asyncio.server import ServerConnection, serve

from exporter.core.frames import PING, SUBSCRIPTIONS
from exporter.shell.stream import StreamClient, StreamOptions, backoff_schedule

Handler = Callable[[ServerConnection], Awaitable[None]]


@contextlib.asynccontextmanager
async def scripted(handler: Handler) -> AsyncIterator[str]:
    """A WebSocket server on 127.0.0.1 running `handler` per connection; yields its base URL."""
    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]  # type: ignore[index]
        yield f"http://127.0.0.1:{port}"


async def test_malformed_frames_are_counted_and_never_crash(start_exporter: StartExporter) -> None:
    """Broken frames and transactions are counted and skipped; the whale after them is found."""
    good = make_tx([("bc1qsomeone", 700 * BTC)])
    frames: list[bytes | str] = [
        "{not json",
        "[1, 2, 3]",
        orjson.dumps({"mempool-transactions": {"sequence": 1, "added": "nope"}}),
        orjson.dumps({"mempool-transactions": {"sequence": "x"}}),
        orjson.dumps({"mempool-blocks": [{"nTx": 1}], "fees": {"fastestFee": "high"}}),
        orjson.dumps({"mempool-transactions": {"sequence": 2, "added": [
            {"txid": "zz", "vin": [], "vout": [{"value": 200 * BTC}]},
            {"txid": "a" * 64, "vin": [], "vout": [{"value": -5}]},
            {"txid": "b" * 64, "vin": [], "vout": [{"value": 22_000_000 * BTC}]},
            good,
        ]}, "someFutureKey": {"x": 1}}),
    ]  # fmt: skip

    async def handler(ws: ServerConnection) -> None:
        for frame in frames:
            await ws.send(frame)
        await ws.wait_closed()

    async with scripted(handler) as url:
        exporter = await start_exporter(url, backfill=False)
        await wait_for(lambda: exporter.value("whale_transactions_total", flow="unknown") == 1)
        assert exporter.value("whale_stream_decode_errors_total", kind="frame") == 2
        assert exporter.value("whale_stream_decode_errors_total", kind="message") == 4
        assert exporter.value("whale_stream_decode_errors_total", kind="transaction") == 3
        assert exporter.value("whale_stream_messages_total", message_type="other") == 1
        (row,) = await exporter.whales()
        assert row["txid"] == good["txid"]


async def test_silent_server_gets_pinged_then_dropped() -> None:
    """A silent server is pinged; with no answer the client reconnects and re-subscribes."""
    received: list[object] = []
    connections = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        async for message in ws:
            received.append(orjson.loads(message))  # never answers

    async with scripted(handler) as url:
        states: list[str] = []
        port = url.rsplit(":", 1)[1]

        async def on_frame(raw: str | bytes, at: float) -> None:
            pass

        client = StreamClient(
            StreamOptions(f"ws://127.0.0.1:{port}/api/v1/ws", ping_interval=0.2,
                          pong_timeout=0.2, stale_after=5),
            on_frame, on_state=states.append, backoff=lambda attempt: 0.05,
        )  # fmt: skip
        task = asyncio.create_task(client.run())
        try:
            await wait_for(lambda: connections >= 2 and received.count(SUBSCRIPTIONS[1]) >= 2)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert PING in received
        assert received[:2] == list(SUBSCRIPTIONS)
        assert "reconnecting" in states and states[0] == "connecting"


async def test_pong_keeps_the_stream_alive() -> None:
    """A server that answers pings is never treated as stale."""
    pings = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal pings
        async for message in ws:
            if orjson.loads(message) == PING:
                pings += 1
                await ws.send(orjson.dumps({"pong": True}))

    async with scripted(handler) as url:
        states: list[str] = []
        frames: list[object] = []

        async def on_frame(raw: str | bytes, at: float) -> None:
            frames.append(raw)

        client = StreamClient(
            StreamOptions(url.replace("http", "ws"), ping_interval=0.05, pong_timeout=1,
                          stale_after=5),
            on_frame, on_state=states.append,
        )  # fmt: skip
        task = asyncio.create_task(client.run())
        try:
            await wait_for(lambda: pings >= 5)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert states == ["connecting", "connected"]
        assert len(frames) >= 5


def test_backoff_grows_with_jitter_and_a_floor() -> None:
    """Delays grow exponentially, are jittered, never drop below the minimum nor pass the max."""
    low = backoff_schedule(1.0, 60.0, rand=lambda: 0.0)
    high = backoff_schedule(1.0, 60.0, rand=lambda: 1.0)
    assert [high(n) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert [low(n) for n in range(3)] == [1.0, 1.0, 2.0]
    assert backoff_schedule(5.0, 60.0, rand=lambda: 0.0)(0) == 5.0


async def test_flapping_server_does_not_reset_the_backoff() -> None:
    """A server that closes each connection at once is retried ever more slowly; a connection
    that stayed up long enough restarts the schedule."""
    connections = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        if connections == 4:  # one healthy connection among the flaps
            await asyncio.sleep(0.3)
        await ws.close()

    async with scripted(handler) as url:
        attempts: list[int] = []

        def backoff(attempt: int) -> float:
            attempts.append(attempt)
            return 0.01

        async def on_frame(raw: str | bytes, at: float) -> None:
            pass

        client = StreamClient(
            StreamOptions(url.replace("http", "ws"), healthy_after=0.25, stale_after=5),
            on_frame,
            backoff=backoff,
        )
        task = asyncio.create_task(client.run())
        try:
            await wait_for(lambda: len(attempts) >= 6)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert attempts[:6] == [0, 1, 2, 0, 1, 2]
