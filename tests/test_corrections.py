"""Reorgs, double-spends, merged replacements and corrected outcomes, over loopback streams."""

from __future__ import annotations

from conftest import StartExporter
from support import BTC, outpoints, wait_for
from support import sim_whale as whale
from test_outcomes import detected, started

from exporter.sim.mempool import SimulatedMempool


async def test_fork_without_a_resent_blocks_list_reopens_and_counts_once(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """A reorg the server does not announce is seen from the next block's parent hash."""
    exporter = await started(sim, start_exporter, check_interval=0.1)
    tx = whale(sim)
    await detected(exporter, sim, tx)
    first = await sim.mine([tx["txid"]])
    await wait_for(lambda: exporter.value("whale_outcomes_total", outcome="confirmed") == 1)
    await sim.reorg(1, announce=False)  # indexing off: no `blocks` is re-sent
    await sim.mine([])  # its previousblockhash is the new block at the whale's height
    await wait_for(lambda: exporter.value("whale_chain_reorgs_total") == 1)
    await wait_for(lambda: exporter.value("whale_pending_transactions", flow="unknown") == 1)
    final = await sim.mine([tx["txid"]])
    assert final["height"] == first["height"] + 2
    await wait_for(lambda: exporter.value("whale_pending_transactions", flow="unknown") == 0)
    (row,) = await exporter.whales()
    assert (row["status"], row["block_height"]) == ("confirmed", final["height"])
    assert row["corrected_from"] == "confirmed"
    assert exporter.value("whale_outcomes_total", outcome="confirmed") == 1  # not twice
    assert exporter.value("whale_outcome_corrections_total", outcome="confirmed") == 0


async def test_fork_while_away_is_seen_from_the_persisted_blocks(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """After a restart, the known blocks from the store reveal a reorg that happened meanwhile."""
    exporter = await started(sim, start_exporter)
    tx = whale(sim)
    await detected(exporter, sim, tx)
    first = await sim.mine([tx["txid"]])
    await wait_for(lambda: exporter.value("whale_outcomes_total", outcome="confirmed") == 1)
    await exporter.close()
    await sim.reorg(1)  # nobody listening; the whale is back in the mempool
    again = await start_exporter(sim.url, check_interval=0.1)
    await wait_for(lambda: again.value("whale_chain_reorgs_total") == 1)
    await wait_for(lambda: again.value("whale_pending_transactions", flow="unknown") == 1)
    final = await sim.mine([tx["txid"]])
    await wait_for(lambda: again.value("whale_pending_transactions", flow="unknown") == 0)
    (row,) = await again.whales()
    assert (row["status"], row["block_height"]) == ("confirmed", final["height"])
    assert final["height"] == first["height"] + 1


async def test_one_transaction_replacing_two_whales_resolves_both(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """Two whales replaced by one transaction (two `replaced` pairs) both resolve with it."""
    exporter = await started(sim, start_exporter, check_interval=0.1)
    first, second = whale(sim, 150, fee_rate=5), whale(sim, 160, fee_rate=5)
    await detected(exporter, sim, first)
    await detected(exporter, sim, second, 2)
    merged = sim.make_tx(outputs=[(sim.random_address(), 309 * BTC)], fee_rate=40,
                         spends=outpoints(first) + outpoints(second))  # fmt: skip
    sim.add(merged)  # spends an outpoint of each: it replaces both
    await sim.flush()
    await wait_for(lambda: exporter.value("whale_replacements_total") == 2)
    await sim.mine([merged["txid"]])
    await wait_for(lambda: exporter.value("whale_outcomes_total", outcome="replaced") == 2)
    assert exporter.value("whale_pending_transactions", flow="unknown") == 0
    rows = await exporter.whales(outcome="replaced")
    assert {row["chain_id"] for row in rows} == {first["txid"], second["txid"]}
    assert {row["txid"] for row in rows} == {merged["txid"]}


async def test_block_double_spend_below_the_threshold_tests_no_prediction(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """A 150 BTC whale cancelled by a 0.001 BTC conflicting block transaction is replaced out."""
    exporter = await started(sim, start_exporter)
    tx = whale(sim, 150, fee_rate=80)
    await detected(exporter, sim, tx)
    cancel = sim.make_tx(outputs=[(sim.random_address(), 100_000)], spends=outpoints(tx))
    await sim.mine([cancel["txid"]])  # never broadcast: it knocks the whale out of the mempool
    await wait_for(lambda: exporter.value("whale_outcomes_total", outcome="replaced") == 1)
    (row,) = await exporter.whales()
    assert row["replaced_out"] is True and row["prediction_hit"] is None
    assert exporter.value("whale_predictions_total", result="hit") == 0


async def test_replacement_below_the_threshold_found_after_a_restart(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """Replaced by a small transaction while away: REST /rbf finds it, and it closes the chain."""
    exporter = await started(sim, start_exporter)
    first = whale(sim, 150, fee_rate=5)
    await detected(exporter, sim, first)
    await exporter.close()
    small = sim.make_tx(outputs=[(sim.random_address(), 20 * BTC)], spends=outpoints(first),
                        fee_rate=60)  # fmt: skip
    sim.replace(first["txid"], small)
    await sim.flush()
    await sim.mine([small["txid"]])
    again = await start_exporter(sim.url)
    await wait_for(lambda: again.value("whale_outcomes_total", outcome="replaced") == 1)
    (row,) = await again.whales()
    assert (row["txid"], row["chain_id"]) == (small["txid"], first["txid"])
    assert row["replaced_out"] is True and row["prediction_hit"] is None
    assert again.value("whale_outcomes_total", outcome="dropped") == 0


async def test_fee_bump_is_judged_from_its_own_tip(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """A whale bumped after blocks went by is a hit when mined where the bump predicted."""
    exporter = await started(sim, start_exporter)
    first = whale(sim, 300, fee_rate=1)
    await detected(exporter, sim, first)
    (row,) = await exporter.whales()
    first_tip, first_blocks = row["tip_height"], row["predicted_blocks"]
    for _ in range(3):
        await sim.mine([])
    bump = whale(sim, 300, fee_rate=90, spends=outpoints(first))
    sim.replace(first["txid"], bump)
    await sim.flush()
    await wait_for(lambda: exporter.value("whale_replacements_total") == 1)
    (row,) = await exporter.whales()
    assert row["tip_height"] == first_tip + 3 and row["predicted_blocks"] == 1
    assert row["predicted_height"] == row["tip_height"] + row["predicted_blocks"]
    assert (row["first_tip_height"], row["first_predicted_blocks"]) == (first_tip, first_blocks)
    await sim.mine([bump["txid"]])
    await wait_for(lambda: exporter.value("whale_outcomes_total", outcome="replaced") == 1)
    (row,) = await exporter.whales()
    assert row["confirmation_blocks"] == 1 and row["prediction_hit"] is True
    assert exporter.value("whale_prediction_accuracy_ratio", window="1h") == 1
