"""Command line: `mempool-whale-exporter [run|demo|healthcheck] [flags]`.

A configuration problem prints one line per bad setting and exits with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from exporter import __version__, logs
from exporter.config import Settings, add_arguments, load, load_address_book
from exporter.core.addresses import AddressBook
from exporter.errors import ConfigError
from exporter.redact import url_secrets

DEMO_DB = Path("data/demo.duckdb")
DEMO_LISTEN = "127.0.0.1:9743"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line naming it, not the whole usage text."""

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        # An unknown flag is named first: argparse would take its value for the command.
        argv = sys.argv[1:] if args is None else list(args)
        known = self._option_string_actions
        unknown = [a.split("=")[0] for a in argv if a.startswith("--") and a != "--"]
        if problems := [f"unknown flag {a}" for a in unknown if a not in known]:
            self._fail(problems)
        return super().parse_args(argv, namespace)

    def error(self, message: str) -> NoReturn:
        unknown = message.removeprefix("unrecognized arguments: ")
        if unknown == message:
            self._fail([message])
        self._fail([f"unexpected argument {arg!r}" for arg in unknown.split()])

    def _fail(self, problems: list[str]) -> NoReturn:
        hint = f"; run `{self.prog} --help` for the flags"
        self.exit(2, "".join(f"{self.prog}: config error: {line}{hint}\n" for line in problems))


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="mempool-whale-exporter",
        allow_abbrev=False,  # `--thresh` is a typo to report, not a flag to guess
        description="Prometheus exporter for Bitcoin mempool whales (mempool.space stream).",
    )
    p.add_argument(
        "command",
        nargs="?",
        choices=("run", "demo", "healthcheck"),
        default="run",
        help="run: watch --mempool-url (default); demo: watch a built-in simulated mempool; "
        "healthcheck: exit 0 when the exporter on this host answers (for containers)",
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
    if command == "healthcheck":
        return _healthcheck(settings)
    secrets = [part for value in settings.secret_values() for part in url_secrets(value)]
    logs.configure(settings.log_level, settings.log_format, secrets)
    try:
        asyncio.run(demo(settings, book) if command == "demo" else _run(settings, book))
    except ConfigError as exc:
        return _config_error(exc)
    except KeyboardInterrupt:
        pass
    return 0


def _healthcheck(settings: Settings) -> int:
    from exporter.healthcheck import problem

    try:
        why = problem(settings)
    except ConfigError as exc:  # an unreadable web config
        return _config_error(exc)
    if why is not None:
        print(f"mempool-whale-exporter: unhealthy: {why}", file=sys.stderr)
        return 1
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
