"""Shared test helpers: transaction builders and waiting on conditions (never on sleeps)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

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
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0, what: str = ""
) -> None:
    """Poll `condition` until it holds; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.02)
