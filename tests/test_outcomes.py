"""Outcomes, replacement chains and accuracy, end to end over scripted loopback streams."""

from __future__ import annotations

import duckdb
from conftest import StartExporter
from support import BTC, outpoints, wait_for
from support import sim_whale as whale

from exporter.shell.http import iso
from exporter.sim.mempool import SimulatedMempool
from exporter.sim.receiver import Receiver


async def started(sim: SimulatedMempool, start_exporter: StartExporter, **overrides: object):
    for _ in range(300):  # a realistic backlog, so the fee picture means something
        sim.add(sim.random_tx())
    exporter = await start_exporter(sim.url, **overrides)
    await sim.wait_until(lambda s: s.connections == 1)
    await wait_for(lambda: exporter.value("whale_backfill_runs_total", result="ok") == 1)
    return exporter


async def detected(exporter, sim: SimulatedMempool, tx: dict, count: int = 1) -> None:
    sim.add(tx)
    await sim.flush()
    await wait_for(lambda: exporter.value("whale_transactions_total", flow="unknown") == count)


async def test_hit_then_miss_moves_accuracy(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """A whale mined in its predicted block is a hit; one mined late is a miss."""
    exporter = await started(sim, start_exporter)
    fast = whale(sim, fee_rate=80)
    await detected(exporter, sim, fast)
    (row,) = await exporter.whales()
    assert row["predicted_blocks"] == 1 and row["urgency_level"] == "high"
    await sim.mine([fast["txid"]])
    await wait_for(lambda: exporter.value("whale_prediction_accuracy_ratio", window="1h") == 1)
    slow = whale(sim, fee_rate=80)
    await detected(exporter, sim, slow, 2)
    for _ in range(3):
        await sim.mine([])
    await sim.mine([slow["txid"]])
    await wait_for(lambda: exporter.value("whale_prediction_outcomes", window="1h") == 2)
    assert exporter.value("whale_prediction_accuracy_ratio", window="24h") == 0.5
    assert exporter.value("whale_outcomes_total", outcome="confirmed") == 2
    assert exporter.value("whale_prediction_error_blocks_count") == 2
    assert exporter.value("whale_prediction_error_blocks_bucket", le="0.0") == 1
    assert exporter.value("whale_confirmation_blocks_bucket", le="1.0") == 1
    body = (await exporter.http.get(f"/api/v1/whales/{slow['txid']}")).json()
    assert body["outcome"] == "confirmed" and body["confirmation_blocks"] == 4
    assert body["prediction_hit"] is False
    summary = (await exporter.http.get("/api/v1/summary", params={"hours": 1})).json()
    assert summary["whales"] == 2 and summary["outcomes"] == {"confirmed": 2}
    assert summary["accuracy"]["1h"] == {"ratio": 0.5, "outcomes": 2}


async def test_replacement_chain_keeps_one_signal(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """Replaced twice, then confirmed: one signal, one alert, outcome replaced."""
    receiver = await Receiver().start()
    exporter = await started(sim, start_exporter, apprise_urls=[receiver.url()])
    first = whale(sim, 300, fee_rate=5)
    await detected(exporter, sim, first)
    spent = outpoints(first)
    second = whale(sim, 300, fee_rate=20, spends=spent)
    sim.replace(first["txid"], second)
    await sim.flush()
    await wait_for(lambda: exporter.value("whale_replacements_total") == 1)
    third = whale(sim, 300, fee_rate=60, spends=spent)
    sim.replace(second["txid"], third)
    await sim.flush()
    await wait_for(lambda: exporter.value("whale_replacements_total") == 2)
    await sim.mine([third["txid"]])
    await wait_for(lambda: exporter.value("whale_outcomes_total", outcome="replaced") == 1)
    assert exporter.value("whale_transactions_total", flow="unknown") == 1
    (row,) = await exporter.whales()
    assert row["txid"] == third["txid"] and row["chain_id"] == first["txid"]
    assert row["replacements"] == 2 and row["effective_fee_rate"] >= 60
    body = (await exporter.http.get(f"/api/v1/whales/{second['txid']}")).json()
    assert body["chain"] == [first["txid"], second["txid"], third["txid"]]
    assert body["outcome"] == "replaced"
    await exporter.close()  # drains the notification queue
    await receiver.close()
    (alert,) = receiver.received
    assert first["txid"] in alert.payload["message"]
    assert "300 BTC" in alert.payload["title"]


async def test_replacement_below_threshold_closes_signal(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """A replacement that moves less than the threshold closes the signal as replaced out."""
    exporter = await started(sim, start_exporter)
    first = whale(sim, 150)
    await detected(exporter, sim, first)
    small = sim.make_tx(outputs=[(sim.random_address(), 20 * BTC)], spends=outpoints(first),
                        fee_rate=50)  # fmt: skip
    sim.replace(first["txid"], small)
    await sim.flush()
    await wait_for(lambda: exporter.value("whale_outcomes_total", outcome="replaced") == 1)
    (row,) = await exporter.whales(outcome="replaced")
    assert row["replaced_out"] is True and row["prediction_hit"] is None
    assert exporter.value("whale_pending_transactions", flow="unknown") == 0


async def test_dropped_then_corrected_when_mined(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """Evicted and unknown to REST: dropped; seen in a block later: corrected to confirmed,
    counted as confirmed once, and the dropped outcome counted as withdrawn."""
    exporter = await started(sim, start_exporter, drop_grace=0, check_interval=0.1)
    tx = whale(sim)
    await detected(exporter, sim, tx)
    sim.remove(tx["txid"])
    await sim.flush()
    await wait_for(lambda: exporter.value("whale_outcomes_total", outcome="dropped") == 1)
    assert exporter.value("whale_prediction_accuracy_ratio", window="1h") == 0
    await sim.mine([tx["txid"]])  # it was in some miner's mempool after all

    async def corrected() -> bool:
        rows = await exporter.whales(outcome="confirmed")
        return len(rows) == 1

    await wait_for(corrected)
    assert exporter.value("whale_prediction_accuracy_ratio", window="1h") == 1
    assert exporter.value("whale_outcomes_total", outcome="confirmed") == 1
    assert exporter.value("whale_outcome_corrections_total", outcome="dropped") == 1
    assert exporter.value("whale_outcomes_total", outcome="dropped") == 1
    # The dropped whale's miss is withdrawn: net of it, one prediction, a hit.
    hits, misses = (exporter.value("whale_predictions_total", result=r) for r in ("hit", "miss"))
    assert (hits, misses) == (1, 1)
    assert exporter.value("whale_prediction_withdrawals_total", result="miss") == 1
    assert exporter.value("whale_prediction_withdrawals_total", result="hit") == 0
    (row,) = await exporter.whales()
    assert (row["status"], row["corrected_from"]) == ("confirmed", "dropped")


async def test_expired_after_max_pending(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """A whale still unconfirmed past --max-pending-days is verified over REST and expires."""
    exporter = await started(sim, start_exporter, max_pending_days=0.00001, check_interval=0.1)
    tx = whale(sim, fee_rate=1)
    await detected(exporter, sim, tx)
    await wait_for(lambda: exporter.value("whale_outcomes_total", outcome="expired") == 1)
    assert any(path.endswith(f"{tx['txid']}/status") for path in sim.rest_requests)


async def test_reorg_re_resolves_whales(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """A whale in a block that a reorg removes becomes pending, then confirms in the new chain."""
    exporter = await started(sim, start_exporter, check_interval=0.1)
    tx = whale(sim)
    await detected(exporter, sim, tx)
    first = await sim.mine([tx["txid"]])
    await wait_for(lambda: exporter.value("whale_outcomes_total", outcome="confirmed") == 1)
    await sim.reorg(1)
    await wait_for(lambda: exporter.value("whale_pending_transactions", flow="unknown") == 1)
    final = await sim.mine([tx["txid"]])
    assert final["height"] == first["height"] + 1
    await wait_for(lambda: exporter.value("whale_pending_transactions", flow="unknown") == 0)
    (row,) = await exporter.whales()
    assert (row["status"], row["block_height"]) == ("confirmed", final["height"])


async def test_stale_block_does_not_confirm(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """A block flagged stale resolves nothing."""
    exporter = await started(sim, start_exporter)
    tx = whale(sim)
    await detected(exporter, sim, tx)
    await sim.mine([tx["txid"]], stale=True)
    await sim.mine([])
    await wait_for(lambda: exporter.value("whale_stream_messages_total", message_type="block") == 2)
    assert exporter.value("whale_pending_transactions", flow="unknown") == 1
    assert exporter.value("whale_outcomes_total", outcome="confirmed") == 0


async def test_outcomes_during_downtime_get_their_true_block(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """After a restart, REST reconciliation records what confirmed while the exporter was down."""
    exporter = await started(sim, start_exporter)
    tx = whale(sim)
    await detected(exporter, sim, tx)
    await exporter.close()
    block = await sim.mine([tx["txid"]])
    again = await start_exporter(sim.url)
    await wait_for(lambda: again.value("whale_outcomes_total", outcome="confirmed") == 1)
    (row,) = await again.whales()
    assert row["block_height"] == block["height"]
    assert row["resolved_at"] == iso(block["timestamp"])  # the block's time, not the restart's


async def test_replaced_during_downtime_gets_its_replacement_block(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """A whale replaced and mined while the exporter was down resolves as replaced, truly."""
    exporter = await started(sim, start_exporter)
    first = whale(sim, 300, fee_rate=5)
    await detected(exporter, sim, first)
    await exporter.close()
    second = whale(sim, 300, fee_rate=40, spends=outpoints(first))
    sim.replace(first["txid"], second)
    await sim.flush()
    block = await sim.mine([second["txid"]])
    again = await start_exporter(sim.url)
    await wait_for(lambda: again.value("whale_outcomes_total", outcome="replaced") == 1)
    (row,) = await again.whales()
    assert (row["txid"], row["chain_id"]) == (second["txid"], first["txid"])
    assert row["block_height"] == block["height"]
    assert again.value("whale_outcomes_total", outcome="dropped") == 0


async def test_retention_deletes_old_rows(
    sim: SimulatedMempool, start_exporter: StartExporter, tmp_path
) -> None:
    """Resolved rows older than --retention-days are deleted on start and counted."""
    exporter = await started(sim, start_exporter)
    tx, pending = whale(sim), whale(sim)
    await detected(exporter, sim, tx)
    await detected(exporter, sim, pending, 2)
    await sim.mine([tx["txid"]])
    await wait_for(lambda: exporter.value("whale_outcomes_total", outcome="confirmed") == 1)
    await exporter.close()
    with duckdb.connect(str(tmp_path / "whales.duckdb")) as con:
        con.execute(f"UPDATE signals SET detected_at = detected_at - 91 * 86400 "
                    f"WHERE txid = '{tx['txid']}'")  # fmt: skip
        con.execute("INSERT INTO deliveries VALUES (0, 'c', 't', 'x', 'new', 1, 'ok', NULL)")
    again = await start_exporter(sim.url)
    await wait_for(lambda: again.value("whale_store_rows_deleted_total") == 2)
    assert [row["txid"] for row in await again.whales()] == [pending["txid"]]
    assert again.value("whale_pending_transactions", flow="unknown") == 1
