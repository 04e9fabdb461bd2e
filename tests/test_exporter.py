"""The real exporter against the simulated mempool.space over loopback WebSocket and REST."""

from __future__ import annotations

import math
import shutil
import subprocess

from conftest import EXCHANGES, StartExporter
from support import BTC, wait_for
from support import sim_whale as whale

from exporter.sim.mempool import SimulatedMempool

BINANCE, KRAKEN = list(EXCHANGES)


async def test_whales_reach_store_metrics_and_api(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """Whales in a real stream are stored, counted by flow and served; small ones are not."""
    exporter = await start_exporter(sim.url)
    await sim.wait_until(lambda s: any("track-mempool" in m for m in s.client_messages))
    assert {"action": "want", "data": ["blocks", "stats", "mempool-blocks"]} in sim.client_messages
    at_threshold = sim.make_tx(outputs=[(BINANCE, 100 * BTC)])
    below = sim.make_tx(outputs=[(BINANCE, 100 * BTC - 1)])
    outflow = sim.make_tx(outputs=[(sim.random_address(), 300 * BTC)], inputs=[(KRAKEN, 301 * BTC)])
    for tx in (at_threshold, below, outflow):
        sim.add(tx)
    await sim.flush()
    await wait_for(lambda: exporter.value("whale_transactions_total", flow="outflow") == 1)
    rows = {w["txid"]: w for w in await exporter.whales()}
    assert set(rows) == {at_threshold["txid"], outflow["txid"]}
    assert rows[at_threshold["txid"]]["flow"] == "inflow"
    assert rows[at_threshold["txid"]]["entity"] == "Binance"
    assert rows[outflow["txid"]]["entity"] == "Kraken"
    assert rows[outflow["txid"]]["explorer_url"] == f"{sim.url}/tx/{outflow['txid']}"
    assert await exporter.scraped("whale_transactions_total", flow="inflow") == 1
    assert await exporter.scraped("whale_pending_transactions", flow="inflow") == 1
    assert await exporter.scraped("whale_volume_btc_total", flow="outflow") == 300
    assert await exporter.scraped("whale_stream_connected") == 1
    assert await exporter.scraped("whale_detection_latency_seconds_count") == 2
    assert (await exporter.http.get("/readyz")).status_code == 200


async def test_live_metrics_pass_promtool(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """`promtool check metrics` accepts the live /metrics output with whales in it."""
    exporter = await start_exporter(sim.url)
    sim.add(whale(sim))
    await sim.wait_until(lambda s: s.connections == 1)
    await sim.flush()
    await wait_for(lambda: exporter.value("whale_transactions_total", flow="unknown") == 1)
    text = await exporter.metrics_text()
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: make test installs Debian's prometheus package"
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for forbidden in ("txid=", "address=", "url="):
        assert forbidden not in text


async def test_reconnect_resubscribes_and_backfills_missed_whales(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """After a dropped socket the client re-subscribes, and a whale sent meanwhile is recovered."""
    exporter = await start_exporter(sim.url)
    await wait_for(lambda: exporter.value("whale_backfill_runs_total", result="ok") == 1)
    seen = whale(sim, 400)
    sim.add(seen)
    await sim.flush()
    await wait_for(lambda: exporter.value("whale_transactions_total", flow="unknown") == 1)
    before = 1
    await sim.drop_connections()
    missed = whale(sim, 500)
    sim.add(missed)
    await sim.flush()  # nobody listens: this whale is only in the mempool now
    await wait_for(lambda: exporter.value("whale_backfill_runs_total", result="ok") == before + 1)
    await wait_for(lambda: exporter.value("whale_transactions_total", flow="unknown") == 2)
    tracks = [m for m in sim.client_messages if m.get("track-mempool") is True]
    assert len(tracks) >= 2
    assert exporter.value("whale_stream_reconnects_total") >= 1
    rows = await exporter.whales()
    assert sorted(w["txid"] for w in rows) == sorted([seen["txid"], missed["txid"]])
    assert [w["backfilled"] for w in rows if w["txid"] == missed["txid"]] == [True]
    assert exporter.value("whale_backfill_recovered_total") == 1


async def test_sequence_gap_triggers_backfill_without_duplicates(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """A jump in `sequence` is counted and starts a backfill that records nothing twice."""
    exporter = await start_exporter(sim.url)
    await sim.wait_until(lambda s: s.connections == 1)
    await wait_for(lambda: exporter.value("whale_backfill_runs_total", result="ok") == 1)
    first = whale(sim)
    sim.add(first)
    await sim.flush()
    await wait_for(lambda: exporter.value("whale_transactions_total", flow="unknown") == 1)
    sim.skip_sequence(3)
    second = whale(sim)
    sim.add(second)
    await sim.flush()
    await wait_for(lambda: exporter.value("whale_stream_sequence_gaps_total") == 1)
    await wait_for(lambda: exporter.value("whale_backfill_runs_total", result="ok") == 2)
    assert exporter.value("whale_transactions_total", flow="unknown") == 2
    assert exporter.value("whale_backfill_recovered_total") == 0
    assert len(await exporter.whales()) == 2


async def test_out_of_sync_sequence_is_not_a_gap(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """A repeated sequence (backend out of sync) is not counted as lost messages."""
    exporter = await start_exporter(sim.url)
    await sim.wait_until(lambda s: s.connections == 1)
    sim.set_in_sync(False)
    for btc in (200, 300):
        sim.add(whale(sim, btc))
        await sim.flush()
    await wait_for(lambda: exporter.value("whale_transactions_total", flow="unknown") == 2)
    assert exporter.value("whale_stream_sequence_gaps_total") == 0


async def test_restart_reloads_pending_whales(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """Pending whales survive a restart and are resolved by a block after it."""
    exporter = await start_exporter(sim.url)
    tx = whale(sim)
    sim.add(tx)
    await sim.wait_until(lambda s: s.connections == 1)
    await sim.flush()
    await wait_for(lambda: exporter.value("whale_pending_transactions", flow="unknown") == 1)
    await exporter.close()
    again = await start_exporter(sim.url)
    assert again.value("whale_pending_transactions", flow="unknown") == 1
    await sim.wait_until(lambda s: s.connections == 1)
    await wait_for(lambda: again.value("whale_backfill_runs_total", result="ok") == 1)
    assert again.value("whale_transactions_total", flow="unknown") == 0  # not a new whale
    block = await sim.mine([tx["txid"]])
    await wait_for(lambda: again.value("whale_outcomes_total", outcome="confirmed") == 1)
    (row,) = await again.whales()
    assert (row["status"], row["block_height"]) == ("confirmed", block["height"])
    assert row["seen_in_mempool"] is True and row["value_is_gross"] is False
    assert again.value("whale_confirmed_total", seen="mempool") == 1
    assert again.value("whale_confirmed_total", seen="block") == 0


async def test_readyz_fails_when_the_stream_is_gone(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """/readyz turns 503 with a JSON reason once the stream has been down past stale-after."""
    exporter = await start_exporter(sim.url)
    await sim.wait_until(lambda s: s.connections == 1)
    await wait_for(lambda: exporter.value("whale_stream_connected") == 1)
    await sim.stop()

    async def unready() -> bool:
        return (await exporter.http.get("/readyz")).status_code == 503

    await wait_for(unready, timeout=15)
    body = (await exporter.http.get("/readyz")).json()
    assert body["ready"] is False and "stream" in body["reasons"][0]
    assert exporter.value("whale_stream_connected") == 0
    states = {s: exporter.value("whale_stream_state", state=s) for s in
              ("connecting", "connected", "reconnecting", "failed")}  # fmt: skip
    assert sum(states.values()) == 1 and states["connected"] == 0
    assert (await exporter.http.get("/healthz")).status_code == 200


async def test_api_rejects_hostile_parameters(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """Bad query parameters get 422 naming the parameter; unknown txids get 404."""
    exporter = await start_exporter(sim.url)
    for params, name in (
        ({"limit": "0"}, "limit"),
        ({"limit": "100000"}, "limit"),
        ({"limit": "1; DROP TABLE signals"}, "limit"),
        ({"flow": "sideways"}, "flow"),
        ({"min_btc": "nan"}, "min_btc"),
        ({"min_btc": "-1"}, "min_btc"),
        ({"since": "yesterday"}, "since"),
        ({"status": "' OR 1=1 --"}, "status"),
        ({"rbf": "perhaps"}, "rbf"),
        ({"min_urgency": "2"}, "min_urgency"),
        ({"outcome": "pending"}, "outcome"),
        ({"bogus": "1"}, "bogus"),
    ):
        response = await exporter.http.get("/api/v1/whales", params=params)
        assert response.status_code == 422, params
        assert response.json()["details"][0]["parameter"] == name
    assert (await exporter.http.get("/api/v1/whales/" + "0" * 64)).status_code == 404
    assert (await exporter.http.get("/api/v1/whales/not-a-txid")).status_code == 422
    assert (await exporter.http.get("/api/v1/summary", params={"hours": "-3"})).status_code == 422
    ok = await exporter.http.get("/api/v1/whales", params={"since": "2024-01-01T00:00:00Z",
                                                          "until": "2030-01-01T00:00:00Z",
                                                          "rbf": "true", "limit": "5"})  # fmt: skip
    assert ok.status_code == 200 and ok.json() == {"whales": [], "count": 0}


async def test_prices_down_whales_still_detected(start_exporter: StartExporter) -> None:
    """With the price source down, whales are detected and their USD value is left empty."""
    sim = SimulatedMempool(seed=9, auto=False, prices_up=False)
    await sim.start()
    try:
        exporter = await start_exporter(sim.url, threshold_usd=1_000_000)
        await sim.wait_until(lambda s: s.connections == 1)
        sim.add(whale(sim, 150))
        await sim.flush()
        await wait_for(lambda: exporter.value("whale_transactions_total", flow="unknown") == 1)
        (row,) = await exporter.whales()
        assert row["value_usd"] is None
        price = exporter.value("whale_price_usd")
        assert price is not None and math.isnan(price)  # unknown, never a price of 0
        assert "whale_price_usd NaN" in await exporter.metrics_text()
    finally:
        await sim.stop()


async def test_usd_threshold_catches_smaller_whales(start_exporter: StartExporter) -> None:
    """With a known price, a transaction under the BTC threshold but over the USD one is a whale."""
    sim = SimulatedMempool(seed=9, auto=False)
    await sim.start()
    try:
        exporter = await start_exporter(sim.url, threshold_usd=1_000_000)
        await sim.wait_until(lambda s: s.connections == 1)
        await wait_for(lambda: (exporter.value("whale_price_usd") or 0) > 0)
        sim.add(whale(sim, 50))
        await sim.flush()
        await wait_for(lambda: exporter.value("whale_transactions_total", flow="unknown") == 1)
        (row,) = await exporter.whales()
        assert row["value_usd"] > 1_000_000
    finally:
        await sim.stop()
