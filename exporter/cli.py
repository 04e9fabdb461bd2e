"""Command line: `mempool-whale-exporter [run|demo] [flags]`.

A configuration problem prints one line per bad setting and exits with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from exporter import __version__, logs
from exporter.config import Settings, add_arguments, load, load_address_book
from exporter.core.addresses import AddressBook
from exporter.errors import ConfigError
from exporter.redact import url_secrets

DEMO_DB = Path("data/demo.duckdb")
DEMO_LISTEN = "127.0.0.1:9743"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mempool-whale-exporter",
        description="Prometheus exporter for Bitcoin mempool whales (mempool.space stream).",
    )
    p.add_argument(
        "command",
        nargs="?",
        choices=("run", "demo"),
        default="run",
        help="run: watch --mempool-url (default); demo: watch a built-in simulated mempool",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = vars(parser().parse_args(argv))
    command = args.pop("command")
    if command == "demo":
        args["db"] = args["db"] or DEMO_DB
        args["listen"] = args["listen"] or DEMO_LISTEN
    try:
        settings = load(args)
        book = load_address_book(settings.exchange_addresses)
    except ConfigError as exc:
        return _config_error(exc)
    secrets = [
        part for url in settings.apprise_urls for part in url_secrets(url.get_secret_value())
    ]
    if settings.alertmanager_token is not None:
        secrets.append(settings.alertmanager_token.get_secret_value())
    logs.configure(settings.log_level, settings.log_format, secrets)
    try:
        asyncio.run(demo(settings, book) if command == "demo" else _run(settings, book))
    except ConfigError as exc:
        return _config_error(exc)
    except KeyboardInterrupt:
        pass
    return 0


def _config_error(exc: ConfigError) -> int:
    for line in str(exc).splitlines():
        print(f"mempool-whale-exporter: config error: {line}", file=sys.stderr)
    return 2


async def _run(settings: Settings, book: AddressBook) -> None:
    from exporter import app

    await app.run(settings, book)


async def demo(settings: Settings, book: AddressBook) -> None:
    """Start the simulator on loopback and the exporter against it; print where to look."""
    from exporter import app
    from exporter.sim.mempool import DEMO_EXCHANGE_ADDRESSES, SimulatedMempool

    logging.getLogger("exporter.sim.mempool").setLevel(logging.WARNING)
    simulator = SimulatedMempool(
        seed=7, auto=True, whale_rate=0.2, exchange_addresses=DEMO_EXCHANGE_ADDRESSES
    )
    await simulator.start()
    try:
        settings = settings.model_copy(update={"mempool_url": simulator.url})
        if not book:
            book = AddressBook(dict(simulator.exchange_addresses))

        def ready(port: int) -> None:
            base = f"http://{settings.host}:{port}"
            print(
                f"\nDemo running against the simulated mempool at {simulator.url}\n"
                f"  metrics:  {base}/metrics\n"
                f"  whales:   {base}/api/v1/whales\n"
                f"  summary:  {base}/api/v1/summary\n"
                "Whales arrive about every 5 seconds. Ctrl-C stops.\n",
                flush=True,
            )

        await app.run(settings, book, on_ready=ready)
    finally:
        await simulator.stop()
