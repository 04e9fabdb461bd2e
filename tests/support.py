"""Shared test helpers: transaction builders and waiting on conditions (never on sleeps)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from exporter.core.models import Flow, Signal
from exporter.notify.notifier import Notifier
from exporter.sim.mempool import SimulatedMempool

BTC = 100_000_000
_counter = itertools.count()


def txid(seed: object | None = None) -> str:
    return hashlib.sha256(repr(next(_counter) if seed is None else seed).encode()).hexdigest()


def make_tx(
    outputs: Sequence[tuple[str | None, int]],
    inputs: Sequence[tuple[str | None, int]] | None = None,
    *,
    fee: int = 5_000,
    vsize: int = 250,
    sequence: int = 0xFFFFFFFD,
    spends: Sequence[tuple[str, int]] | None = None,
    prevouts: bool = True,
    effective_rate: float | None = None,
    position: int | None = None,
    tx_id: str | None = None,
) -> dict[str, Any]:
    """A full mempool.space transaction (esplora shape plus mempool extras)."""
    total = sum(value for _, value in outputs)
    inputs = inputs or [("bc1qsender" + txid()[:20], total + fee)]
    spends = spends or [(txid(), 0) for _ in inputs]
    vin = []
    for (address, value), (prev_txid, prev_vout) in zip(inputs, spends, strict=True):
        prevout = {"scriptpubkey_type": "v0_p2wpkh", "value": value}
        if address:
            prevout["scriptpubkey_address"] = address
        vin.append(
            {
                "txid": prev_txid,
                "vout": prev_vout,
                "is_coinbase": False,
                "sequence": sequence,
                "prevout": prevout if prevouts else None,
            }
        )
    vout = []
    for address, value in outputs:
        out: dict[str, Any] = {"scriptpubkey_type": "v0_p2wpkh", "value": value}
        if address:
            out["scriptpubkey_address"] = address
        vout.append(out)
    rate = round(fee / vsize, 2)
    tx: dict[str, Any] = {
        "txid": tx_id or txid(),
        "version": 2,
        "locktime": 0,
        "vin": vin,
        "vout": vout,
        "size": vsize,
        "weight": vsize * 4,
        "fee": fee,
        "status": {"confirmed": False},
        "vsize": vsize,
        "feePerVsize": rate,
        "adjustedFeePerVsize": rate,
        "effectiveFeePerVsize": effective_rate if effective_rate is not None else rate,
        "firstSeen": int(time.time()),
    }
    if position is not None:
        tx["position"] = {"block": position, "vsize": 1000}
    return tx


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float = 10.0,
    what: str = "",
    details: Callable[[], str] = lambda: "",
    interval: float = 0.02,
) -> None:
    """Poll `condition` until it holds; fail naming `what` (and `details()`) after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what or condition}\n{details()}"
            )
        await asyncio.sleep(interval)


def make_signal(txid: str, btc: float, /, **changes: Any) -> Signal:
    """A pending whale signal with plain defaults; `changes` sets any other field."""
    values: dict[str, Any] = {
        "chain_id": txid,
        "txid": txid,
        "detected_at": 1_700_000_000.0,
        "first_seen": 1_700_000_000.0,
        "value_sats": round(btc * BTC),
        "gross_sats": round(btc * BTC),
        "fee_sats": 20_000,
        "vsize": 400.0,
        "fee_rate": 50.0,
        "effective_fee_rate": 50.0,
        "flow": Flow.INFLOW,
        "entity": "Binance",
        "bip125": True,
        "chain": [txid],
    }
    values.update(changes)
    return Signal(**values)


def sim_whale(sim: SimulatedMempool, btc: float = 250, **kwargs: Any) -> dict[str, Any]:
    """A whale transaction built by the simulator, to a fresh address."""
    return sim.make_tx(outputs=[(sim.random_address(), int(btc * BTC))], **kwargs)


TAIL_RATE = 1.0  # sat/vB: under 9 MvB of 5 sat/vB txs (`sim.bury`), below every projected list


def tail_whale(sim: SimulatedMempool, btc: float = 250) -> dict[str, Any]:
    """A whale paying TAIL_RATE: in no projected block once the mempool is buried."""
    return sim_whale(sim, btc, fee_rate=TAIL_RATE)


def outpoints(tx: dict[str, Any]) -> list[tuple[str, int]]:
    """The outpoints `tx` spends: what a replacement must spend too."""
    return [(i["txid"], i["vout"]) for i in tx["vin"]]


def tool(name: str) -> str:
    """The path of a Debian binary, or a test failure (not a skip) saying how to install it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not on PATH. `make test` installs it (Debian packages prometheus and "
            "prometheus-alertmanager); by hand: apt-get install prometheus prometheus-alertmanager",
            pytrace=False,
        )
    return path


@contextlib.asynccontextmanager
async def running(notifier: Notifier, timeout: float = 5.0) -> AsyncIterator[Notifier]:
    """A started notifier with its run task; closed (draining for `timeout`) on the way out."""
    await notifier.start()
    task = asyncio.create_task(notifier.run())
    try:
        yield notifier
    finally:
        await notifier.close(timeout)
        await task


def config_file(tmp_path: Path, entries: dict[str, str]) -> Path:
    """An Apprise YAML config file giving each URL its tag."""
    path = tmp_path / "apprise.yml"
    lines = ["version: 1", "urls:"]
    for url, tag in entries.items():
        lines += [f'  - "{url}":', f"      - tag: {tag}"]
    path.write_text("\n".join(lines) + "\n")
    return path


async def short_backoff(seconds: float) -> None:
    """The retry and probe schedule, made short: the notifier waits, the test never does."""
    await asyncio.sleep(min(seconds, 0.05))
