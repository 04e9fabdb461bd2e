"""Soak: the real exporter process against the simulator at 5,000 tx/s; RSS over time.

The simulator runs in a process of its own on 127.0.0.1, in scripted mode. Every second it sends
the ordinary transactions due at `--tx-rate` in a `mempool-transactions` message, drawn from a
pool of 30,000 realistic ones its builder made once and cycled (building or projecting 5,000 a
second costs the simulator more than a core; its automatic mode tops out near 1,000 tx/s on two
shared cores). Whales (`--whale-rate`) enter its real mempool, so REST, backfill and outcomes
see them, and it mines a block every `--block-interval` seconds.
The exporter runs as `python -m exporter run` against it, as in production. Its resident memory
is sampled ten times a second; every `--every` seconds a line shows that window's median, low and
peak with what it examined, detected and queued.

Memory counts as flat when the median of the last third of the samples is within `--tolerance`
(10 %) of the median of the middle third: start-up and warm-up (DuckDB's buffers, the first
blocks) happen in the first third, and medians look past the sawtooth of each parsed frame.

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--tx-rate 5000] [--every 30]

A benchmark, not a test: it exits 0 when memory stayed flat, 1 when it grew.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from exporter.sim.builder import DEMO_EXCHANGE_ADDRESSES
from exporter.sim.mempool import SimulatedMempool
from exporter.sim.model import Broadcast

POLL = 1.0  # seconds between polls, as mempool.space sends them
SAMPLE_EVERY = 0.1  # seconds between RSS samples
POOL = 30_000  # ordinary transactions built once and cycled (building costs ~0.1 ms each)


async def feed(sim: SimulatedMempool, args: argparse.Namespace, pool: list[dict[str, Any]]) -> None:
    """Send the transactions due at the target rate each poll; whales and blocks go through
    the simulator's own mempool (so REST, backfill and outcomes see them)."""
    rng = random.Random(1)
    loop = asyncio.get_running_loop()
    last = loop.time()
    owed = whales_owed = 0.0
    turn = 0
    next_block = last + args.block_interval
    while True:
        # At least a fifth of a second for the sockets, even when the machine cannot keep up.
        await asyncio.sleep(max(0.2, last + POLL - loop.time()))
        now = loop.time()
        owed = min(owed + (now - last) * args.tx_rate, 2 * args.tx_rate)  # no debt spiral
        whales_owed += (now - last) * args.whale_rate
        last = now
        batch = [pool[(turn + i) % POOL] for i in range(int(owed))]
        turn, owed = (turn + len(batch)) % POOL, owed - len(batch)
        rng.shuffle(batch)
        delta = {"added": batch, "removed": [], "mined": [], "replaced": []}
        sim.server.broadcast(Broadcast(delta=delta))  # ordinary traffic, serialised once
        for _ in range(int(whales_owed)):
            sim.add(sim.random_whale())
        whales_owed -= int(whales_owed)
        await sim.flush()
        if now >= next_block:
            next_block = now + args.block_interval
            await sim.mine()


async def scrape(http: httpx.AsyncClient, base: str) -> dict[str, float]:
    text = (await http.get(f"{base}/metrics")).text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "whale_transactions_total":
                values[sample.name] = values.get(sample.name, 0.0) + sample.value
            elif not sample.labels:
                values[sample.name] = sample.value
    return values


async def listening_port(pid: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for conn in psutil.Process(pid).net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr.ip == "127.0.0.1":
                return int(conn.laddr.port)
        await asyncio.sleep(0.2)
    raise SystemExit("the exporter did not start listening")


async def sample(
    args: argparse.Namespace, exporter: asyncio.subprocess.Process, base: str
) -> list[tuple[float, float]]:
    """RSS ten times a second; every `--every` seconds a line with that window's RSS and what
    the exporter examined, detected and queued.

    Ten a second, not one per line: each poll's frame lifts RSS by ~30 MB for a tenth of a
    second, and a lone sample every 30 s (the block interval, and nearly a multiple of the
    poll) can lock onto that peak for minutes and look like a step.
    """
    proc = psutil.Process(exporter.pid)
    samples: list[tuple[float, float]] = []
    print(f"{'min':>5} {'RSS MB':>7} {'low':>6} {'peak':>6} {'tx seen':>11} {'tx/s':>7} "
          f"{'whales':>7} {'queue':>6}")  # fmt: skip
    start = time.monotonic()
    window: list[float] = []
    last_seen = last_at = 0.0
    report_at = 0.0
    async with httpx.AsyncClient(timeout=60) as http:
        while (elapsed := time.monotonic() - start) <= args.minutes * 60 + 1:
            if exporter.returncode is not None:
                raise SystemExit("the exporter died")
            rss = proc.memory_info().rss / 2**20
            samples.append((elapsed, rss))
            window.append(rss)
            if elapsed >= report_at:
                metrics = await scrape(http, base)
                seen = metrics.get("whale_mempool_transactions_seen_total", 0.0)
                rate = (seen - last_seen) / max(elapsed - last_at, 1e-9) if last_at else 0.0
                last_seen, last_at = seen, elapsed
                whales = metrics.get("whale_transactions_total", 0.0)
                queue = metrics.get("whale_frame_queue_depth", 0.0)
                print(f"{elapsed / 60:5.1f} {statistics.median(window):7.1f} {min(window):6.1f} "
                      f"{max(window):6.1f} {seen:11.0f} {rate:7.0f} {whales:7.0f} {queue:6.0f}",
                      flush=True)  # fmt: skip
                window.clear()
                report_at += args.every
            await asyncio.sleep(SAMPLE_EVERY)
    print(f"average {last_seen / max(last_at, 1e-9):.0f} tx/s examined, {whales:.0f} whales")
    return samples


def verdict(args: argparse.Namespace, samples: list[tuple[float, float]]) -> bool:
    """Flat: the median RSS of the last third of the run is within the tolerance of the middle
    third's.

    Medians over thousands of samples, not peaks: RSS is a sawtooth (each poll's frame is
    parsed, then freed); a leak moves the whole saw up.
    """
    span = samples[-1][0]
    middle = statistics.median(r for t, r in samples if span / 3 <= t < 2 * span / 3)
    late = statistics.median(r for t, r in samples if t >= 2 * span / 3)
    settled = [r for t, r in samples if t >= span / 3]
    growth = (late - middle) / middle
    flat = growth <= args.tolerance
    print(
        f"{len(samples)} samples; RSS after warm-up {min(settled):.1f}-{max(settled):.1f} MB, "
        f"median {middle:.1f} MB in the middle third, {late:.1f} MB in the last "
        f"({growth:+.1%}): " + ("flat" if flat else "GROWING")
    )
    return flat


async def simulate(args: argparse.Namespace) -> None:
    """The simulator and its feeder (a process of their own): print the URL, serve forever."""
    sim = SimulatedMempool(seed=1, auto=False, exchange_addresses=DEMO_EXCHANGE_ADDRESSES)
    await sim.start()
    pool = [sim.random_tx() for _ in range(POOL)]
    print(sim.url, flush=True)
    try:
        await feed(sim, args, pool)
    finally:
        await sim.stop()


async def run(args: argparse.Namespace) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHALE_")}
    simulator = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--simulate", *sys.argv[1:], env=env,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert simulator.stdout is not None
    url = (await simulator.stdout.readline()).decode().strip()
    with tempfile.TemporaryDirectory() as tmp:
        exporter = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "exporter", "run", "--mempool-url", url,
            "--db", str(Path(tmp) / "soak.duckdb"), "--listen", "127.0.0.1:0",
            "--log-level", "WARNING", env=env, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{await listening_port(exporter.pid)}"
            print(f"soak: {args.minutes:g} min at {args.tx_rate:g} tx/s, exporter pid "
                  f"{exporter.pid}")  # fmt: skip
            samples = await sample(args, exporter, base)
        finally:
            for process in (exporter, simulator):
                if process.returncode is None:
                    process.terminate()
                    await process.wait()
    return 0 if verdict(args, samples) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--tx-rate", type=float, default=5_000.0)
    parser.add_argument("--whale-rate", type=float, default=1.0, help="whales per second")
    parser.add_argument("--block-interval", type=float, default=30.0, help="seconds")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--tolerance", type=float, default=0.10)
    parser.add_argument("--simulate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.simulate:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(simulate(args))
        return 0
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
