"""The live whale stream (exporter.shell.http.sse) over loopback, with a real SSE client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from conftest import Exporter, StartExporter
from prometheus_client import CollectorRegistry
from support import make_signal, outpoints, txid, wait_for
from support import sim_whale as whale

from exporter.config import load
from exporter.core.models import Event, EventKind
from exporter.metrics import Metrics
from exporter.shell.http.sse import QUEUE_SIZE, Broker
from exporter.shell.store import Store
from exporter.sim.mempool import SimulatedMempool

TOKEN = "stream-token-0123456789abcdef"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@dataclass
class Message:
    id: int | None
    event: str | None
    data: dict[str, Any] | None
    comment: str | None = None


async def messages(response: httpx.Response) -> AsyncIterator[Message]:
    """Parse a text/event-stream body as the SSE spec says: fields until a blank line."""
    fields: dict[str, str] = {}
    comment = None
    async for line in response.aiter_lines():
        if line.startswith(":"):
            comment = line[1:].strip()
        elif line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        else:
            data = json.loads(fields["data"]) if "data" in fields else None
            event_id = int(fields["id"]) if "id" in fields else None
            yield Message(event_id, fields.get("event"), data, comment)
            fields, comment = {}, None


async def read_events(exporter: Exporter, count: int, last_id: int | None = None) -> list[Message]:
    """Connect, take `count` events (not comments), then hang up."""
    headers = dict(AUTH)
    if last_id is not None:
        headers["last-event-id"] = str(last_id)
    got: list[Message] = []
    async with exporter.http.stream("GET", "/api/v1/whales/stream", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for message in messages(response):
            if message.event is not None:
                got.append(message)
                if len(got) == count:
                    break
    return got


async def test_stream_resumes_after_disconnect_without_loss_or_repeat(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """A client that hangs up and reconnects with Last-Event-ID gets every event exactly once."""
    exporter = await start_exporter(sim.url, api_tokens=[TOKEN])
    await sim.wait_until(lambda s: s.connections == 1)
    first, second = whale(sim, 300), whale(sim, 400)

    async def publish_first_two() -> None:
        await wait_for(lambda: exporter.value("whale_sse_clients") == 1, what="a stream client")
        sim.add(first)
        sim.add(second)
        await sim.flush()

    publisher = asyncio.create_task(publish_first_two())
    before = await asyncio.wait_for(read_events(exporter, 2), 20)
    await publisher
    await wait_for(lambda: exporter.value("whale_sse_clients") == 0, what="the hang-up")

    # While nobody listens: a third whale, a replacement of the second, the first confirmed.
    third = whale(sim, 500)
    sim.add(third)
    bumped = whale(sim, 400, fee_rate=80, spends=outpoints(second))
    sim.replace(second["txid"], bumped)
    await sim.flush()
    await wait_for(lambda: exporter.value("whale_replacements_total") == 1)
    await sim.mine([first["txid"]])
    await wait_for(lambda: exporter.value("whale_outcomes_total", outcome="confirmed") == 1)

    after = await asyncio.wait_for(read_events(exporter, 3, last_id=before[-1].id), 20)
    events = before + after
    ids = [e.id for e in events]
    assert all(i is not None for i in ids)
    assert ids == list(range(ids[0], ids[0] + len(ids))), f"a gap or a repeat: {ids}"
    assert [(e.event, e.data and e.data["chain_id"]) for e in events] == [
        ("whale", first["txid"]),
        ("whale", second["txid"]),
        ("whale", third["txid"]),
        ("update", second["txid"]),
        ("outcome", first["txid"]),
    ]
    assert after[1].data is not None and after[1].data["txid"] == bumped["txid"]
    assert after[2].data is not None and after[2].data["status"] == "confirmed"
    assert exporter.value("whale_sse_events_total") == 5


async def test_stream_replays_from_duckdb_after_a_restart(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """Events survive a restart: a client resuming from before it gets them from the store."""
    exporter = await start_exporter(sim.url, api_tokens=[TOKEN])
    await sim.wait_until(lambda s: s.connections == 1)
    txs = [whale(sim, 300 + i) for i in range(3)]
    for tx in txs:
        sim.add(tx)
    await sim.flush()
    await wait_for(lambda: exporter.value("whale_transactions_total", flow="unknown") == 3)
    await exporter.close()

    restarted = await start_exporter(sim.url, api_tokens=[TOKEN])
    replayed = await asyncio.wait_for(read_events(restarted, 3, last_id=0), 20)
    assert sorted(str(e.data and e.data["txid"]) for e in replayed) == sorted(
        tx["txid"] for tx in txs
    )  # one frame: their order within it is the tracker's
    ids = [e.id for e in replayed]
    assert ids == sorted(set(ids))
    later = whale(sim, 900)
    await sim.wait_until(lambda s: s.connections >= 1)

    async def publish() -> None:
        await wait_for(lambda: restarted.value("whale_sse_clients") == 1)
        sim.add(later)
        await sim.flush()

    publisher = asyncio.create_task(publish())
    (live,) = await asyncio.wait_for(read_events(restarted, 1, last_id=ids[-1]), 20)
    await publisher
    assert live.data is not None and live.data["txid"] == later["txid"]
    assert live.id is not None and live.id > ids[-1]


async def test_stream_sends_heartbeats_and_requires_the_token(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """Without a token the stream is 401; with one, heartbeat comments arrive while idle."""
    exporter = await start_exporter(sim.url, api_tokens=[TOKEN], sse_heartbeat=0.1)
    refused = await exporter.http.get("/api/v1/whales/stream")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    heartbeats = 0
    async with exporter.http.stream("GET", "/api/v1/whales/stream", headers=AUTH) as response:
        async for line in response.aiter_lines():
            heartbeats += line == ": heartbeat"
            if heartbeats == 2:
                break
    assert heartbeats == 2


async def test_a_client_that_falls_behind_is_cut_off_and_detection_never_waits(
    tmp_path: Path,
) -> None:
    """A stream client that reads nothing is dropped (counted) once its queue is full."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, process=False)
    store = Store(tmp_path / "w.duckdb")
    await store.open()
    try:
        settings = load({"db": tmp_path / "w.duckdb"}, environ={})
        broker = Broker(settings, store, metrics)
        await broker.start()
        body = broker.stream(None)
        assert (await anext(body)).startswith(b"retry:")  # subscribed, then reads nothing
        assert registry.get_sample_value("whale_sse_clients") == 1
        for i in range(QUEUE_SIZE + 1):  # submit is synchronous: it cannot wait on a reader
            broker.submit(Event(EventKind.DETECTED, make_signal(txid(i), 150)))
        assert registry.get_sample_value("whale_sse_dropped_clients_total") == 1
        rest = [chunk async for chunk in body]
        assert rest == []  # ends at once: the client resumes from the store with Last-Event-ID
        assert registry.get_sample_value("whale_sse_clients") == 0
        await broker.flush()
        assert len(await store.events_after(0, 10_000)) == QUEUE_SIZE + 1
    finally:
        await store.close()
