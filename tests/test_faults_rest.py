"""REST faults during a backfill, over loopback: a failed txid list, 500s, a 429 and a hang."""

from __future__ import annotations

from conftest import StartExporter
from support import tail_whale, wait_for

from exporter.sim.mempool import SimulatedMempool


async def test_rest_faults_during_backfill_lose_and_duplicate_nothing(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """Deep-tail whales missed during an outage are all recovered once, although the backfill
    meets a failing txid list (read again after a back-off), two 500s, a 429 and a request
    that never answers."""
    sim.bury(9_000_000, fee_rate=5.0, silently=True)
    exporter = await start_exporter(sim.url, rest_timeout=1, resync_min_interval=0)
    await wait_for(lambda: exporter.value("whale_backfill_runs_total", result="ok") == 1)
    missed = [tail_whale(sim, btc) for btc in (300, 400, 500)]
    for tx in missed:
        sim.add_silently(tx)  # in the mempool only: nobody was told
    failing, limited, hanging = (f"/api/tx/{tx['txid']}" for tx in missed)
    sim.fail("/api/mempool/txids", 500, times=1)
    sim.fail(failing, 500, times=2)
    sim.fail(limited, 429, retry_after=1, times=1)
    sim.fail(hanging, hang=True, times=1)
    await sim.drop_connections()

    await wait_for(
        lambda: exporter.value("whale_backfill_recovered_total") == 3, 45, "every missed whale"
    )
    rows = await exporter.whales(limit=1000)
    assert sorted(row["txid"] for row in rows) == sorted(tx["txid"] for tx in missed)  # once
    assert all(row["backfilled"] for row in rows)
    assert exporter.value("whale_backfill_runs_total", result="error") == 1  # the failed list
    assert sim.rest_requests.count("/api/mempool/txids") == 3  # start, failure, the retry
    assert sim.rest_requests.count(failing) == 3  # two 500s, then the answer
    assert sim.rest_requests.count(limited) == 2  # the 429, then the answer after Retry-After
    assert sim.rest_requests.count(hanging) == 2  # the timeout, then the answer
    for code, count in (("500", 2), ("429", 1), ("error", 1)):
        sample = exporter.value("whale_rest_requests_total", endpoint="/api/tx/:hash", code=code)
        assert sample == count, code
