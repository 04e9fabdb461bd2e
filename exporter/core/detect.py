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

from exporter.core import limits
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


# Sane ranges of the numbers detection reads (see limits.py); outside them the tx is rejected.
NUMBER_RANGES = {
    "vsize": (0.0, limits.MAX_TX_VSIZE),
    "weight": (0.0, 4.0 * limits.MAX_TX_VSIZE),
    "feePerVsize": (0.0, limits.MAX_FEE_RATE),
    "adjustedFeePerVsize": (0.0, limits.MAX_FEE_RATE),
    "effectiveFeePerVsize": (0.0, limits.MAX_FEE_RATE),
    "firstSeen": (limits.MIN_TIME, limits.MAX_TIME),
}


def _number(tx: Mapping[str, Any], key: str) -> float | None:
    """`tx[key]` within its sane range, None when absent; DecodeError when absurd."""
    low, high = NUMBER_RANGES[key]
    return limits.optional_number(tx, key, low, high)


def detect(tx: Any, book: AddressBook, gross: int | None = None) -> Detection:
    """Examine one full transaction (esplora shape plus mempool extras)."""
    gross = gross_sats(tx) if gross is None else gross
    txid = tx.get("txid")
    if not isinstance(txid, str) or not TXID.fullmatch(txid):
        raise DecodeError("transaction has no valid txid")
    vin = tx.get("vin")
    if not isinstance(vin, list) or not all(isinstance(i, dict) for i in vin):
        raise DecodeError(f"{txid}: transaction has no vin list")

    prevouts = [p for i in vin if isinstance(p := i.get("prevout"), dict)]
    have_prevouts = bool(vin) and len(prevouts) == len(vin)
    input_addresses = {a for p in prevouts if (a := _address(p))}
    paid = [o for o in tx["vout"] if not (have_prevouts and _address(o) in input_addresses)]
    value = sum(out["value"] for out in paid)
    flow, entity = classify(paid, prevouts, value, book)

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
        value_is_gross=not have_prevouts,
    )


def classify(
    paid: list[dict[str, Any]], prevouts: list[dict[str, Any]], value: int, book: AddressBook
) -> tuple[Flow, str | None]:
    """The flow follows the value: where the outputs that are not self-change go, and who pays.

    - inflow: listed addresses receive most of the value and no listed input funds it;
    - outflow: listed inputs fund most of it and most of the value goes to unlisted addresses;
    - internal: listed inputs fund most of it and listed addresses receive most of the value;
    - unknown: anything else (no listed address, or listed ones on a minor part only).

    `paid` are the outputs that count as value (self-change excluded), `prevouts` the inputs'
    previous outputs (empty when the instance sends none).
    """
    if not book:
        return Flow.UNKNOWN, None
    receivers = _by_entity(paid, book)
    payers = _by_entity(prevouts, book)
    received = sum(receivers.values())
    funded = sum(payers.values()) * 2 > sum(_amount(p) for p in prevouts)
    most_listed = received * 2 > value
    if funded:
        payer = max(payers, key=payers.__getitem__)
        if not most_listed:
            return Flow.OUTFLOW, payer
        receiver = max(receivers, key=receivers.__getitem__)
        return Flow.INTERNAL, payer if payer == receiver else f"{payer} → {receiver}"
    if most_listed and not payers:
        return Flow.INFLOW, max(receivers, key=receivers.__getitem__)
    return Flow.UNKNOWN, None


def _amount(item: Mapping[str, Any]) -> int:
    amount = item.get("value")
    return amount if isinstance(amount, int) and not isinstance(amount, bool) else 0


def _by_entity(items: list[dict[str, Any]], book: AddressBook) -> dict[str, int]:
    """Sats per listed entity among outputs (or prevouts); unlisted ones are left out."""
    totals: dict[str, int] = {}
    for item in items:
        entity = book.entity(_address(item))
        if entity is not None:
            totals[entity] = totals.get(entity, 0) + _amount(item)
    return totals
