"""Stream faults over loopback, through a TCP proxy: a silent server and a frame cut mid-way."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from conftest import Exporter, StartExporter
from faults import Proxy, subscribed
from support import sim_whale, wait_for

from exporter.sim.mempool import SimulatedMempool


@pytest.fixture
async def proxy(sim: SimulatedMempool) -> AsyncIterator[Proxy]:
    running = await Proxy(sim.port).start()
    yield running
    await running.stop()


async def stored(exporter: Exporter, txid: str) -> bool:
    return txid in {row["txid"] for row in await exporter.whales(limit=1000)}


async def settled(sim: SimulatedMempool, exporter: Exporter) -> None:
    """Subscribed, first whale stored, first backfill done: the stream is in steady flow."""
    await subscribed(sim)
    first = sim_whale(sim)
    sim.add(first)
    await sim.flush()
    await wait_for(lambda: stored(exporter, first["txid"]), 15, "the first whale")
    await wait_for(lambda: (exporter.value("whale_backfill_runs_total", result="ok") or 0) >= 1)


async def test_a_silent_server_is_left_and_its_whale_recovered(
    sim: SimulatedMempool, proxy: Proxy, start_exporter: StartExporter
) -> None:
    """A connection that goes quiet is declared stale, replaced, and the whale sent into the
    silence is recovered once, by the backfill after the reconnect."""
    exporter = await start_exporter(proxy.url, api_rate_limit=1000, api_rate_burst=1000)
    await settled(sim, exporter)
    proxy.silence()
    lost = sim_whale(sim, 300)
    sim.add(lost)
    await sim.flush()  # swallowed by the silent connection
    await wait_for(lambda: stored(exporter, lost["txid"]), 40, "the whale sent into silence")
    assert (exporter.value("whale_stream_reconnects_total") or 0) >= 1
    assert exporter.value("whale_stream_connected") == 1
    rows = [row["txid"] for row in await exporter.whales(limit=1000)]
    assert rows.count(lost["txid"]) == 1


async def test_a_frame_cut_mid_way_costs_nothing(
    sim: SimulatedMempool, proxy: Proxy, start_exporter: StartExporter
) -> None:
    """A connection dropped in the middle of a frame is a clean reconnect, never a crash; the
    whale the frame carried is recovered once."""
    exporter = await start_exporter(proxy.url, api_rate_limit=1000, api_rate_burst=1000)
    await settled(sim, exporter)
    proxy.cut_next(min_bytes=1_000)
    cut = sim_whale(sim, 400)
    sim.add(cut)
    await sim.flush()
    await wait_for(lambda: stored(exporter, cut["txid"]), 40, "the whale of the cut frame")
    assert proxy.cuts == 1
    assert (exporter.value("whale_stream_reconnects_total") or 0) >= 1
    assert exporter.value("whale_stream_decode_errors_total", kind="frame") == 0
    rows = [row["txid"] for row in await exporter.whales(limit=1000)]
    assert rows.count(cut["txid"]) == 1
