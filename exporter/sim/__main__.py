"""`python -m exporter.sim`: serve a simulated mempool.space on loopback until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Sequence

from exporter.sim.builder import DEMO_EXCHANGE_ADDRESSES
from exporter.sim.mempool import SimulatedMempool


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m exporter.sim``."""
    parser = argparse.ArgumentParser(
        prog="python -m exporter.sim",
        description="Run a simulated mempool.space backend (WebSocket + REST on one port).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8999)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tx-rate", type=float, default=4.0, help="ordinary txs per second")
    parser.add_argument("--whale-rate", type=float, default=0.2, help="whales per second")
    parser.add_argument("--block-interval", type=float, default=30.0, help="mean seconds")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="seconds")
    parser.add_argument(
        "--no-exchanges", action="store_true", help="do not route whales via demo exchanges"
    )
    parser.add_argument(
        "--backend",
        choices=("public", "bare"),
        default="public",
        help="REST as mempool.space (public) or a bare backend (/api/v1/ only)",
    )
    parser.add_argument(
        "--no-prevouts", action="store_true", help="stream inputs without prevouts (bitcoind)"
    )
    parser.add_argument(
        "--esplora", action="store_true", help="also serve an electrs REST port (/internal/...)"
    )
    parser.add_argument(
        "--tail", type=int, default=0, help="add this many unannounced 1-2 sat/vB txs"
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Run the simulator until SIGINT or SIGTERM."""
    sim = SimulatedMempool(
        seed=args.seed,
        tx_rate=args.tx_rate,
        whale_rate=args.whale_rate,
        block_interval=args.block_interval,
        poll_interval=args.poll_interval,
        exchange_addresses=None if args.no_exchanges else DEMO_EXCHANGE_ADDRESSES,
        backend=args.backend,
        stream_prevouts=not args.no_prevouts,
        esplora=args.esplora,
    )
    if args.tail > 0:
        sim.fill_tail(args.tail, whale_every=5_000)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await sim.start(args.host, args.port)
    print(f"simulated mempool.space at {sim.url} (ws: /api/v1/ws)", flush=True)
    if args.esplora:
        print(f"simulated electrs at {sim.esplora_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the simulator until SIGINT/SIGTERM."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
