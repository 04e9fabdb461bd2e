"""No whale missed: resync after outages, esplora at start-up, the block audit, prevout-less
instances and bare backends, all against the simulator over loopback."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from conftest import EXCHANGES, StartExporter
from support import BTC, tail_whale, wait_for

from exporter.sim.mempool import SimulatedMempool
from exporter.sim.receiver import Receiver

BINANCE, KRAKEN = list(EXCHANGES)


@contextlib.asynccontextmanager
async def simulated(**options: Any) -> AsyncIterator[SimulatedMempool]:
    sim = SimulatedMempool(seed=11, auto=False, exchange_addresses=EXCHANGES, **options)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def test_deep_tail_whale_added_during_an_outage_is_found_after_reconnect(
    start_exporter: StartExporter,
) -> None:
    """A low-fee whale no message announced, below every projected list, is found by the
    txid-list diff after the reconnect, fetching only what is unknown."""
    async with simulated() as sim:
        sim.bury(9_000_000, fee_rate=5.0, silently=True)
        exporter = await start_exporter(sim.url, resync_min_interval=0)
        await wait_for(lambda: exporter.value("whale_backfill_runs_total", result="ok") == 1)
        assert exporter.value("whale_known_mempool_transactions") == len(sim.mempool)
        fetched_before = sim.rest_calls("/api/tx/:txid")
        missed = tail_whale(sim)
        sim.add_silently(missed)  # as if announced while we were away
        await sim.drop_connections()
        await wait_for(lambda: exporter.value("whale_transactions_total", flow="unknown") == 1)
        (row,) = await exporter.whales()
        assert row["txid"] == missed["txid"] and row["backfilled"] is True
        assert sim.rest_calls("/api/tx/:txid") - fetched_before == 1  # the diff, not the tail
        assert exporter.value("whale_backfill_recovered_total") == 1


async def test_deep_tail_whale_at_startup_is_found_with_esplora(
    start_exporter: StartExporter,
) -> None:
    """With --esplora-url, every transaction in the mempool at start-up is examined, so a
    deep-tail whale already there is recorded; without it, it is not."""
    async with simulated(esplora=True) as sim:
        sim.bury(9_000_000, fee_rate=5.0, silently=True)
        deep = tail_whale(sim, 300)
        sim.add_silently(deep)
        plain = await start_exporter(sim.url)
        await wait_for(lambda: plain.value("whale_backfill_runs_total", result="ok") == 1)
        assert plain.value("whale_transactions_total", flow="unknown") == 0  # the gap closed here
        await plain.close()
        exporter = await start_exporter(sim.url, esplora_url=sim.esplora_url)
        await wait_for(lambda: exporter.value("whale_transactions_total", flow="unknown") == 1)
        (row,) = await exporter.whales()
        assert row["txid"] == deep["txid"] and row["backfilled"] is True
        examined = exporter.value("whale_resync_examined_transactions_total", source="esplora")
        assert examined is not None and examined >= len(sim.mempool)
        assert sim.rest_calls("/internal/mempool/txs/:txid") >= 1


async def test_after_a_gap_esplora_fetches_the_unknown_in_one_batch(
    start_exporter: StartExporter,
) -> None:
    """With --esplora-url, the unknown txids of a gap are fetched with one POST to electrs,
    not one /api/tx each."""
    async with simulated(esplora=True) as sim:
        sim.bury(9_000_000, fee_rate=5.0, silently=True)
        exporter = await start_exporter(sim.url, esplora_url=sim.esplora_url, resync_min_interval=0)
        await wait_for(lambda: exporter.value("whale_backfill_runs_total", result="ok") == 1)
        missed = [tail_whale(sim, btc) for btc in (150, 250)]
        for tx in missed:
            sim.add_silently(tx)
        await sim.drop_connections()
        await wait_for(lambda: exporter.value("whale_transactions_total", flow="unknown") == 2)
        assert {w["txid"] for w in await exporter.whales()} == {t["txid"] for t in missed}
        assert sim.rest_calls("POST /internal/mempool/txs") == 1
        assert sim.rest_calls("/api/tx/:txid") == 0


async def test_whale_mined_unseen_is_recorded_notified_once_and_counted(
    start_exporter: StartExporter,
) -> None:
    """A whale confirmed without a mempool sighting is stored confirmed at its height with
    `seen_in_mempool: false` and no prediction, notified once, and counted by the recall
    counters next to a whale caught in the mempool."""
    async with simulated() as sim, Receiver() as receiver:
        exporter = await start_exporter(sim.url, apprise_urls=[receiver.url()])
        await wait_for(lambda: exporter.value("whale_backfill_runs_total", result="ok") == 1)
        caught = sim.make_tx(outputs=[(BINANCE, 200 * BTC)])
        sim.add(caught)
        await sim.flush()
        await wait_for(lambda: exporter.value("whale_transactions_total", flow="inflow") == 1)
        unseen = sim.make_tx(outputs=[(sim.random_address(), 400 * BTC)])  # never announced
        block = await sim.mine([caught["txid"], unseen["txid"]])
        await wait_for(lambda: exporter.value("whale_confirmed_total", seen="block") == 1)
        assert exporter.value("whale_confirmed_total", seen="mempool") == 1
        row = next(w for w in await exporter.whales() if w["txid"] == unseen["txid"])
        assert (row["status"], row["block_height"]) == ("confirmed", block["height"])
        assert row["seen_in_mempool"] is False and row["predicted_blocks"] is None
        assert row["value_btc"] == 400
        titles = [r.payload["title"] for r in await receiver.wait_for(2, timeout=15)]
        unseen_titles = [t for t in titles if "without a mempool sighting" in t]
        assert len(unseen_titles) == 1, titles
        await sim.mine()  # another block, and a reconnect: nothing is audited twice
        await sim.drop_connections()
        await wait_for(lambda: exporter.value("whale_audit_blocks_total", result="ok") == 2)
        await wait_for(lambda: exporter.value("whale_backfill_runs_total", result="ok") == 2)
        assert exporter.value("whale_confirmed_total", seen="block") == 1
        assert len(await exporter.whales()) == 2
        titles = [r.payload["title"] for r in receiver.received]
        assert sum("without a mempool sighting" in t for t in titles) == 1


async def test_one_failing_fetch_does_not_hide_the_other_candidates(
    start_exporter: StartExporter,
) -> None:
    """When one candidate's /api/tx fails, the others are still recorded and the sweep
    counts; the failed one is fetched again later and found."""
    async with simulated() as sim:
        exporter = await start_exporter(sim.url, check_interval=0.5)
        await wait_for(lambda: exporter.value("whale_backfill_runs_total", result="ok") == 1)
        failing = sim.make_tx(outputs=[(sim.random_address(), 500 * BTC)])
        others = [sim.make_tx(outputs=[(sim.random_address(), btc * BTC)]) for btc in (300, 200)]
        for tx in (failing, *others):
            sim.add_silently(tx)
        sim.fail(f"/api/tx/{failing['txid']}", 500)
        await sim.drop_connections()
        await wait_for(lambda: exporter.value("whale_transactions_total", flow="unknown") == 2)
        assert exporter.value("whale_backfill_runs_total", result="ok") == 2
        assert {w["txid"] for w in await exporter.whales()} == {t["txid"] for t in others}
        sim.clear_faults()
        await wait_for(lambda: exporter.value("whale_transactions_total", flow="unknown") == 3)
        assert failing["txid"] in {w["txid"] for w in await exporter.whales()}


async def test_candidates_go_first_by_gross_value_and_the_rest_is_counted(
    start_exporter: StartExporter,
) -> None:
    """With room for one fetch, the largest projected candidate is fetched; the others are
    counted as skipped, not fetched."""
    async with simulated() as sim:
        exporter = await start_exporter(sim.url, resync_fetch_limit=1)
        await wait_for(lambda: exporter.value("whale_backfill_runs_total", result="ok") == 1)
        whales = [sim.make_tx(outputs=[(sim.random_address(), b * BTC)]) for b in (300, 900, 200)]
        for tx in whales:
            sim.add_silently(tx)
        fetched_before = sim.rest_calls("/api/tx/:txid")
        await sim.drop_connections()
        await wait_for(lambda: exporter.value("whale_backfill_runs_total", result="ok") == 2)
        (row,) = await exporter.whales()
        assert row["txid"] == whales[1]["txid"]
        assert exporter.value("whale_resync_skipped_transactions_total") == 2
        assert sim.rest_calls("/api/tx/:txid") - fetched_before == 1


async def test_flapping_server_causes_no_resync_storm(start_exporter: StartExporter) -> None:
    """Connections that close at once start no resync: the txid list is read once, after a
    connection finally lasts."""
    async with simulated() as sim:
        sim.flapping = True
        exporter = await start_exporter(sim.url)
        await sim.wait_until(lambda s: s.connection_count >= 8)
        assert sim.rest_calls("/api/mempool/txids") == 0
        assert exporter.value("whale_backfill_runs_total", result="ok") == 0
        sim.flapping = False
        await wait_for(lambda: exporter.value("whale_backfill_runs_total", result="ok") == 1)
        assert sim.rest_calls("/api/mempool/txids") == 1


async def test_prevout_less_stream_does_not_count_change_as_whale_value(
    start_exporter: StartExporter,
) -> None:
    """Without prevouts in the stream, candidates are fetched over REST first: a 10 BTC
    payment with 289.9 BTC of change is no whale, an exchange's outflow is an outflow; when
    REST fails, the whale is recorded by gross value and says so."""
    async with simulated(stream_prevouts=False) as sim:
        exporter = await start_exporter(sim.url, backfill=False)
        await sim.wait_until(lambda s: any("track-mempool" in m for m in s.client_messages))
        change = sim.make_tx(
            inputs=[(BINANCE, 300 * BTC)],
            outputs=[(sim.random_address(), 10 * BTC), (BINANCE, 28_990_000_000)],
        )
        outflow = sim.make_tx(
            inputs=[(KRAKEN, 301 * BTC)], outputs=[(sim.random_address(), 300 * BTC)]
        )
        for tx in (change, outflow):
            sim.add(tx)
        await sim.flush()
        await wait_for(lambda: exporter.value("whale_transactions_total", flow="outflow") == 1)
        (row,) = await exporter.whales()
        assert row["txid"] == outflow["txid"] and row["entity"] == "Kraken"
        assert row["value_is_gross"] is False
        sim.fail("/api/tx/:txid", 500)
        gross = sim.make_tx(
            inputs=[(sim.random_address(), 151 * BTC)],
            outputs=[(sim.random_address(), 150 * BTC)],
        )
        sim.add(gross)
        await sim.flush()
        await wait_for(lambda: exporter.value("whale_gross_value_fallbacks_total") == 1, timeout=30)
        rows = {w["txid"]: w for w in await exporter.whales()}
        assert change["txid"] not in rows
        assert rows[gross["txid"]]["value_is_gross"] is True


async def test_bare_backend_with_only_api_v1_works(start_exporter: StartExporter) -> None:
    """Against a backend that serves REST only under /api/v1/, a whale already in the mempool
    at start-up is found and resolved; the esplora prefix is learnt once."""
    async with simulated(backend="bare") as sim:
        present = sim.make_tx(outputs=[(sim.random_address(), 700 * BTC)])
        sim.add_silently(present)
        exporter = await start_exporter(sim.url)
        await wait_for(lambda: exporter.value("whale_transactions_total", flow="unknown") == 1)
        assert sim.rest_calls("/api/v1/tx/:txid") >= 1
        assert sim.rest_calls("/api/v1/mempool/txids") == 1
        assert sim.rest_calls("/api/tx/:txid") + sim.rest_calls("/api/blocks/tip/height") <= 1
        await sim.mine([present["txid"]])
        await wait_for(lambda: exporter.value("whale_confirmed_total", seen="mempool") == 1)


async def test_a_429_pauses_fetches_until_retry_after(start_exporter: StartExporter) -> None:
    """A 429 with Retry-After is honoured: the fetch is asked again once, after it, and the
    whale is found; nothing hammers the instance meanwhile."""
    async with simulated() as sim:
        exporter = await start_exporter(sim.url, resync_min_interval=0)
        await wait_for(lambda: exporter.value("whale_backfill_runs_total", result="ok") == 1)
        missed = sim.make_tx(outputs=[(sim.random_address(), 250 * BTC)])
        sim.add_silently(missed)
        path = f"/api/tx/{missed['txid']}"
        sim.fail(path, 429, retry_after=1, times=1)
        await sim.drop_connections()
        await wait_for(lambda: exporter.value("whale_transactions_total", flow="unknown") == 1)
        assert sim.rest_requests.count(path) == 2


async def test_a_reconcile_under_way_is_not_started_again_by_the_periodic_check(
    start_exporter: StartExporter,
) -> None:
    """While the reconcile's status request hangs, the periodic checks ask nothing again."""
    async with simulated() as sim:
        exporter = await start_exporter(sim.url, check_interval=0.1)
        await sim.wait_until(lambda s: any("track-mempool" in m for m in s.client_messages))
        pending = sim.make_tx(outputs=[(sim.random_address(), 250 * BTC)])
        sim.add(pending)
        await sim.flush()
        await wait_for(lambda: exporter.value("whale_pending_transactions", flow="unknown") == 1)
        await wait_for(lambda: exporter.value("whale_backfill_runs_total", result="ok") == 1)
        status = f"/api/tx/{pending['txid']}/status"
        before = sim.rest_requests.count(status)
        sim.fail(status, hang=True)
        await sim.drop_connections()  # the resync reconciles every pending whale
        await wait_for(lambda: sim.rest_requests.count(status) == before + 1)
        lag = "whale_event_loop_lag_seconds_count"
        ticks_from = exporter.value(lag) or 0
        await wait_for(lambda: (exporter.value(lag) or 0) >= ticks_from + 3)  # >= 1.5 s of ticks
        assert sim.rest_requests.count(status) == before + 1
        sim.clear_faults()


async def test_a_reorg_audits_the_replacing_blocks(start_exporter: StartExporter) -> None:
    """After a reorg the new blocks at the old heights are audited; the blocks seen at
    start-up are not."""
    async with simulated() as sim:
        exporter = await start_exporter(sim.url)
        await wait_for(lambda: exporter.value("whale_backfill_runs_total", result="ok") == 1)
        assert sim.rest_calls("/api/v1/block/:hash/summary") == 0
        await sim.reorg(2)
        await wait_for(lambda: exporter.value("whale_audit_blocks_total", result="ok") == 2)
        assert sim.rest_calls("/api/v1/block/:hash/summary") == 2


async def test_blocks_mined_while_the_exporter_was_down_are_audited_after_restart(
    start_exporter: StartExporter,
) -> None:
    """After a restart, every block mined while the exporter was down is audited once: those
    in the first `blocks` list and, found by height over REST, those below it."""
    async with simulated() as sim:
        first = await start_exporter(sim.url)
        await wait_for(lambda: first.value("whale_backfill_runs_total", result="ok") == 1)
        await sim.mine()  # seen live, audited, and persisted as the last block seen
        await wait_for(lambda: first.value("whale_audit_blocks_total", result="ok") == 1)
        await first.close()
        below = sim.make_tx(outputs=[(sim.random_address(), 300 * BTC)])  # under the list
        listed = sim.make_tx(outputs=[(sim.random_address(), 500 * BTC)])  # in the last 8
        mined = {1: below, 10: listed}
        blocks = [await sim.mine(unseen=[mined[n]] if n in mined else []) for n in range(12)]
        exporter = await start_exporter(sim.url)
        await wait_for(lambda: exporter.value("whale_confirmed_total", seen="block") == 2)
        await wait_for(lambda: exporter.value("whale_audit_blocks_total", result="ok") == 12)
        rows = {w["txid"]: w for w in await exporter.whales()}
        for n, tx in mined.items():
            row = rows[tx["txid"]]
            assert (row["status"], row["block_height"]) == ("confirmed", blocks[n]["height"])
            assert row["seen_in_mempool"] is False
        assert sim.rest_calls("/api/v1/blocks/:height") >= 1
        assert sim.rest_calls("/api/v1/block/:hash/summary") == 1 + 12  # none audited twice
        assert exporter.value("whale_audit_blocks_total", result="skipped") == 0
