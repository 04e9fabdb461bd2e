"""Start-up sweep through esplora: a 700k-transaction mempool fully examined, over loopback.

Fills the simulator's mempool with `--txs` low-fee transactions (every `--whale-every`-th a
100-300 BTC whale) that no stream message announced, then starts the real exporter (real
DuckDB, real HTTP server) with `--esplora-url` pointing at the simulator's electrs port and
times, from the exporter's start, until its start-up resync has paged through every
transaction (`GET /internal/mempool/txs[/:last_txid]?max_txs=1000`) and examined it. It checks
that every whale was recorded, so a fast run cannot be one that skipped transactions.

The simulator runs in the same process and on the same event loop, so its serving time is
inside the figure: a real electrs on another core only makes it shorter.

    .venv/bin/python benchmarks/esplora_startup.py [--txs 700000] [--whale-every 5000] [--json]

Target: under 60 s. A benchmark, not a timed test: it exits 0 either way.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry

from exporter import app
from exporter.config import load
from exporter.core.addresses import AddressBook
from exporter.sim.mempool import SimulatedMempool


async def run(txs: int, whale_every: int) -> dict[str, float | int]:
    sim = SimulatedMempool(seed=3, auto=False, esplora=True)
    await sim.start()
    try:
        filled_at = time.perf_counter()
        sim.fill_tail(txs, whale_every=whale_every)
        fill_seconds = time.perf_counter() - filled_at
        with tempfile.TemporaryDirectory() as tmp:
            settings = load(
                {
                    "mempool_url": sim.url,
                    "esplora_url": sim.esplora_url,
                    "db": Path(tmp) / "whales.duckdb",
                    "listen": "127.0.0.1:0",
                    "log_level": "WARNING",
                },
                environ={},
            )
            registry = CollectorRegistry()
            stop = asyncio.Event()
            started = time.perf_counter()
            task = asyncio.create_task(
                app.run(settings, AddressBook({}), stop=stop, registry=registry,
                        handle_signals=False)
            )  # fmt: skip

            def value(name: str, **labels: str) -> float:
                return registry.get_sample_value(name, labels) or 0.0

            while value("whale_backfill_runs_total", result="ok") < 1:
                if task.done():
                    task.result()
                if value("whale_backfill_runs_total", result="error") >= 1:
                    raise SystemExit("the start-up resync failed: see the log")
                await asyncio.sleep(0.05)
            seconds = time.perf_counter() - started
            examined = int(value("whale_resync_examined_transactions_total", source="esplora"))
            whales = int(value("whale_transactions_total", flow="unknown"))
            stop.set()
            await asyncio.wait_for(task, 30)
    finally:
        await sim.stop()
    expected = txs // whale_every if whale_every else 0
    assert examined >= txs, f"examined {examined} of {txs}"
    assert whales == expected, f"{whales} whales recorded, {expected} in the mempool"
    return {
        "txs": txs,
        "examined": examined,
        "whales": whales,
        "simulator_fill_seconds": round(fill_seconds, 1),
        "startup_sweep_seconds": round(seconds, 1),
        "tx_per_second": round(examined / seconds),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "target_seconds": 60,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txs", type=int, default=700_000)
    parser.add_argument("--whale-every", type=int, default=5_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.txs, args.whale_every))
    if args.json:
        print(orjson.dumps(result).decode())
        return
    for key, value in result.items():
        print(f"{key:>24}: {value}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
