"""Whale detection: what a transaction moves, and where, with no I/O.

`gross_sats` is the cheap first look every transaction gets; only those whose outputs reach the
threshold are examined in full by `detect`. The net value can only be smaller than the gross
value, so the first look never hides a whale.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from exporter.core.addresses import AddressBook
from exporter.core.errors import DecodeError
from exporter.core.models import MAX_BTC, SATS_PER_BTC, Detection, Flow

MAX_SATS = MAX_BTC * SATS_PER_BTC
TXID = re.compile(r"[0-9a-f]{64}")
FINAL_SEQUENCE = 0xFFFFFFFE  # BIP125: any input sequence below this signals replaceability


def _sats(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise DecodeError(f"{where}: value is not an integer")
    if value < 0 or value > MAX_SATS:
        raise DecodeError(f"{where}: impossible value {value}")
    return value


def gross_sats(tx: Any) -> int:
    """Sum of all outputs; raises DecodeError for a malformed or impossible transaction.

    Every mempool transaction passes here, so the common case is kept to one loop.
    """
    try:
        total = 0
        for out in tx["vout"]:
            value = out["value"]
            if type(value) is not int or value < 0:  # bool is not int here, on purpose
                raise TypeError
            total += value
    except (TypeError, KeyError, IndexError):
        return _explain(tx)
    if total > MAX_SATS:
        raise DecodeError(f"outputs sum to {total} sats, more than 21M BTC")
    return total


def _explain(tx: Any) -> int:
    """The slow path of `gross_sats`: say exactly what is wrong."""
    if not isinstance(tx, dict):
        raise DecodeError("transaction is not an object")
    vout = tx.get("vout")
    if not isinstance(vout, list):
        raise DecodeError("transaction has no vout list")
    for out in vout:
        if not isinstance(out, dict):
            raise DecodeError("output is not an object")
        _sats(out.get("value"), "output")
    raise DecodeError("transaction is malformed")  # pragma: no cover


def _address(item: Mapping[str, Any] | None) -> str | None:
    address = item.get("scriptpubkey_address") if item else None
    return address if isinstance(address, str) and address else None


def _number(tx: Mapping[str, Any], key: str) -> float | None:
    value = tx.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def detect(tx: Any, book: AddressBook, gross: int | None = None) -> Detection:
    """Examine one full transaction (esplora shape plus mempool extras)."""
    gross = gross_sats(tx) if gross is None else gross
    txid = tx.get("txid")
    if not isinstance(txid, str) or not TXID.fullmatch(txid):
        raise DecodeError("transaction has no valid txid")
    vin = tx.get("vin")
    if not isinstance(vin, list) or not all(isinstance(i, dict) for i in vin):
        raise DecodeError(f"{txid}: transaction has no vin list")

    prevouts = [i.get("prevout") for i in vin]
    have_prevouts = bool(vin) and all(isinstance(p, dict) for p in prevouts)
    input_addresses = {a for p in prevouts if isinstance(p, dict) if (a := _address(p))}
    value = 0
    for out in tx["vout"]:
        if not (have_prevouts and _address(out) in input_addresses):
            value += out["value"]

    inflow = _largest_entity(tx["vout"], book)
    outflow = _largest_entity([p for p in prevouts if isinstance(p, dict)], book)
    if inflow and outflow:
        flow = Flow.INTERNAL
        entity = outflow if inflow == outflow else f"{outflow} → {inflow}"
    elif inflow:
        flow, entity = Flow.INFLOW, inflow
    elif outflow:
        flow, entity = Flow.OUTFLOW, outflow
    else:
        flow, entity = Flow.UNKNOWN, None

    fee = _sats(tx.get("fee", 0), f"{txid} fee")
    vsize = _number(tx, "vsize")
    if vsize is None:
        weight = _number(tx, "weight")
        vsize = float(math.ceil(weight / 4)) if weight else 0.0
    fee_rate = _number(tx, "adjustedFeePerVsize") or _number(tx, "feePerVsize")
    if fee_rate is None:
        fee_rate = fee / vsize if vsize > 0 else 0.0
    effective = _number(tx, "effectiveFeePerVsize") or fee_rate
    position = tx.get("position")
    block = position.get("block") if isinstance(position, dict) else None
    return Detection(
        txid=txid,
        value_sats=value,
        gross_sats=gross,
        fee_sats=fee,
        vsize=vsize,
        fee_rate=round(fee_rate, 3),
        effective_fee_rate=round(effective, 3),
        flow=flow,
        entity=entity,
        bip125=any(
            isinstance(i.get("sequence"), int) and i["sequence"] < FINAL_SEQUENCE for i in vin
        ),
        first_seen=_number(tx, "firstSeen"),
        position_block=block if isinstance(block, int) and block >= 0 else None,
        outpoints=tuple(
            (i["txid"], i["vout"])
            for i in vin
            if isinstance(i.get("txid"), str) and isinstance(i.get("vout"), int)
        ),
    )


def _largest_entity(items: list[Any], book: AddressBook) -> str | None:
    """The exchange behind the largest listed output (or prevout), if any is listed."""
    if not book:
        return None
    best: tuple[int, str] | None = None
    for item in items:
        entity = book.entity(_address(item))
        if entity is not None:
            amount = item.get("value") if isinstance(item.get("value"), int) else 0
            if best is None or amount > best[0]:
                best = (amount, entity)
    return best[1] if best else None
