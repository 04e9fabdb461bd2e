"""Transaction and fee maths of the simulated mempool: values, flags, projection, fee levels.

Pure functions of their arguments (no clock, no sockets): the model and the REST routes use them,
and so do the benchmarks.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Tx = dict[str, Any]
Outpoint = tuple[str, int]

COIN = 100_000_000
BLOCK_VSIZE = 1_000_000
LAST_LIST_VSIZE = 1_200_000
PROJECTED_BLOCKS = 8
MIN_RELAY_FEE_BTC_KVB = 0.00001
SEQUENCE_RBF = 0xFFFFFFFD
SEQUENCE_FINAL = 0xFFFFFFFF
ESPLORA_KEYS = ("txid", "version", "locktime", "vin", "vout", "size", "weight", "fee", "status")

# mempool's TransactionFlags (backend/src/mempool.interfaces.ts).
FLAG_RBF = 1
FLAG_NO_RBF = 1 << 1
FLAG_V1 = 1 << 2
FLAG_V2 = 1 << 3
FLAG_REPLACEMENT = 1 << 18
FLAG_OP_RETURN = 1 << 24
FLAG_CONSOLIDATION = 1 << 33
FLAG_BATCH_PAYOUT = 1 << 34
FLAG_SIGHASH_ALL = 1 << 40
_TYPE_FLAGS = {
    "p2pk": 1 << 8,
    "multisig": 1 << 9,
    "p2pkh": 1 << 10,
    "p2sh": 1 << 11,
    "v0_p2wpkh": 1 << 12,
    "v0_p2wsh": 1 << 13,
    "v1_p2tr": 1 << 14,
}


def script_type(address: str) -> str:
    """Best-effort esplora ``scriptpubkey_type`` for an address."""
    if address.startswith(("bc1q", "tb1q", "bcrt1q")):
        return "v0_p2wpkh" if len(address) <= 44 else "v0_p2wsh"
    if address.startswith(("bc1p", "tb1p", "bcrt1p")):
        return "v1_p2tr"
    if address.startswith("1"):
        return "p2pkh"
    if address.startswith("3"):
        return "p2sh"
    return "v0_p2wpkh"


def tx_value(tx: Mapping[str, Any]) -> int:
    """Gross value: the sum of all outputs, change included."""
    return sum(int(out["value"]) for out in tx["vout"])


def tx_rate(tx: Mapping[str, Any]) -> float:
    """Effective fee rate in sat/vB."""
    return float(tx.get("effectiveFeePerVsize") or tx["fee"] / max(1, tx_vsize(tx)))


def tx_vsize(tx: Mapping[str, Any]) -> int:
    """Virtual size; esplora-only shapes fall back to ceil(weight/4)."""
    if "vsize" in tx:
        return int(tx["vsize"])
    return math.ceil(int(tx["weight"]) / 4)


def tx_flags(tx: Mapping[str, Any]) -> int:
    """mempool's TransactionFlags bit set for a tx (the subset this simulator models)."""
    flags = FLAG_SIGHASH_ALL
    vin: Sequence[Mapping[str, Any]] = tx["vin"]
    vout: Sequence[Mapping[str, Any]] = tx["vout"]
    signals = any(int(i.get("sequence", SEQUENCE_FINAL)) < 0xFFFFFFFE for i in vin)
    flags |= FLAG_RBF if signals else FLAG_NO_RBF
    flags |= FLAG_V1 if tx.get("version") == 1 else FLAG_V2
    for i in vin:
        prevout = i.get("prevout")
        if prevout:
            flags |= _TYPE_FLAGS.get(str(prevout.get("scriptpubkey_type")), 0)
    for out in vout:
        kind = str(out.get("scriptpubkey_type"))
        flags |= FLAG_OP_RETURN if kind == "op_return" else _TYPE_FLAGS.get(kind, 0)
    if len(vin) >= 5 and len(vout) <= 2:
        flags |= FLAG_CONSOLIDATION
    if len(vout) >= 7 and len(vin) <= 2:
        flags |= FLAG_BATCH_PAYOUT
    return flags


def esplora_form(tx: Mapping[str, Any]) -> dict[str, Any]:
    """A tx as esplora serves it: without mempool's extras."""
    return {k: tx[k] for k in ESPLORA_KEYS if k in tx}


def stripped(tx: Mapping[str, Any]) -> dict[str, Any]:
    """The short form used by ``/api/mempool/recent`` and ``transactions``."""
    return {
        "txid": tx["txid"],
        "fee": tx["fee"],
        "vsize": tx_vsize(tx),
        "value": tx_value(tx),
        "rate": round(tx_rate(tx), 2),
    }


def fee_range(rates_desc: Sequence[float], length: int) -> list[float]:
    """mempool's Common.getFeesInRange: ``length`` rates from min to max of a desc-sorted list."""
    if not rates_desc:
        return [0.0] * length
    n = len(rates_desc)
    out = [rates_desc[-1]]
    chunk = 1 / (length - 1)
    for k in range(length - 2, 0, -1):
        out.append(rates_desc[min(n - 1, math.floor(n * chunk * k))])
    out.append(rates_desc[0])
    return [round(r, 2) for r in out]


def median(values: Sequence[float]) -> float:
    """Median of an unsorted sequence (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


@dataclass
class Projection:
    """Projected blocks as the real backend's mempool-blocks module reports them."""

    blocks: list[dict[str, Any]]
    lists: list[list[list[Any]]]
    positions: dict[str, tuple[int, float]]
    listed: set[str]


def project(txs: Iterable[Mapping[str, Any]]) -> Projection:
    """Sort by fee rate into 8 projected blocks of 1 MvB, the last aggregating the rest.

    Blocks 0-6 list all their txs; block 7's list stops at 1.2 MvB, so low-fee txs deep in a
    large mempool appear in no list (and get no ``flags``).
    """
    ordered = sorted(txs, key=lambda t: (-tx_rate(t), t.get("firstSeen", 0), t["txid"]))
    members: list[list[Mapping[str, Any]]] = [[]]
    used = [0]
    positions: dict[str, tuple[int, float]] = {}
    lists: list[list[list[Any]]] = [[]]
    listed: set[str] = set()
    for tx in ordered:
        vsize = tx_vsize(tx)
        index = len(members) - 1
        if index < PROJECTED_BLOCKS - 1 and used[index] > 0 and used[index] + vsize > BLOCK_VSIZE:
            members.append([])
            used.append(0)
            lists.append([])
            index += 1
        positions[tx["txid"]] = (index, used[index] + vsize / 2)
        used[index] += vsize
        members[index].append(tx)
        last = index == PROJECTED_BLOCKS - 1
        if not last or used[index] <= LAST_LIST_VSIZE:
            listed.add(tx["txid"])
            lists[index].append(
                [
                    tx["txid"],
                    int(tx["fee"]),
                    int(tx["weight"]) / 4,
                    tx_value(tx),
                    round(tx_rate(tx), 2),
                    tx_flags(tx),
                    int(tx.get("firstSeen") or 0),
                ]
            )
    blocks: list[dict[str, Any]] = []
    for group, vsize in zip(members, used, strict=True):
        if not group:
            continue
        rates = [tx_rate(t) for t in group]
        blocks.append(
            {
                "blockSize": sum(int(t["size"]) for t in group),
                "blockVSize": vsize,
                "nTx": len(group),
                "totalFees": sum(int(t["fee"]) for t in group),
                "medianFee": round(median(rates), 3),
                "feeRange": fee_range(rates, 8),
            }
        )
    return Projection(blocks, lists[: len(blocks)], positions, listed)


def recommended_fees(blocks: Sequence[Mapping[str, Any]], min_fee: float = 1.0) -> dict[str, float]:
    """mempool's fee-api: levels from projected medians, averaged with the level before."""

    def optimize(
        block: Mapping[str, Any], nxt: Mapping[str, Any] | None, previous: float | None
    ) -> float:
        use = block["medianFee"] if previous is None else (block["medianFee"] + previous) / 2
        if block["blockVSize"] <= 500_000:
            return min_fee
        if block["blockVSize"] <= 950_000 and nxt is None:
            multiplier = (block["blockVSize"] - 500_000) / 500_000
            return float(max(use * multiplier, min_fee))
        return float(use)

    def at(i: int) -> Mapping[str, Any] | None:
        return blocks[i] if i < len(blocks) else None

    b0, b1, b2 = at(0), at(1), at(2)
    first = optimize(b0, b1, None) if b0 else min_fee
    second = optimize(b1, b2, first) if b1 else min_fee
    third = optimize(b2, at(3), second) if b2 else min_fee
    fastest = max(min_fee, first)
    half = max(min_fee, second)
    hour = max(min_fee, third)
    economy = max(min_fee, min(2 * min_fee, third))
    return {
        "fastestFee": max(fastest, half, hour, economy),
        "halfHourFee": max(half, hour, economy),
        "hourFee": max(hour, economy),
        "economyFee": economy,
        "minimumFee": min_fee,
    }


def fee_histogram(txs: Iterable[Mapping[str, Any]], bin_vsize: int = 50_000) -> list[list[float]]:
    """Esplora's ``fee_histogram``: [rate, vsize] bins from the highest rate down."""
    ordered = sorted(((tx_rate(t), tx_vsize(t)) for t in txs), reverse=True)
    bins: list[list[float]] = []
    acc = 0
    for rate, vsize in ordered:
        acc += vsize
        if acc >= bin_vsize:
            bins.append([round(rate, 2), acc])
            acc = 0
    if acc and ordered:
        bins.append([round(ordered[-1][0], 2), acc])
    return bins


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson sample (Knuth for small means, a normal approximation above 30)."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit = math.exp(-lam)
    k, p = 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def select_template(txs: Mapping[str, Mapping[str, Any]], limit: int) -> list[str]:
    """A miner's choice: best fee rates first, parents before children, up to ``limit`` vB."""
    chosen: list[str] = []
    included: set[str] = set()
    used = 0
    for tx in sorted(txs.values(), key=lambda t: (-tx_rate(t), t["firstSeen"])):
        vsize = tx_vsize(tx)
        if used + vsize > limit:
            if limit - used < 200:
                break
            continue
        parents = {i["txid"] for i in tx["vin"] if i["txid"] in txs}
        if not parents <= included:
            continue
        chosen.append(str(tx["txid"]))
        included.add(str(tx["txid"]))
        used += vsize
    return chosen


def mempool_info(totals: tuple[int, int, int]) -> dict[str, Any]:
    """Bitcoin Core's ``getmempoolinfo`` for (count, vsize, fees), as ``mempoolInfo``."""
    count, vbytes, fees = totals
    return {
        "loaded": True,
        "size": count,
        "bytes": vbytes,
        "usage": vbytes * 3 + 1_000_000,
        "total_fee": round(fees / COIN, 8),
        "maxmempool": 300_000_000,
        "mempoolminfee": MIN_RELAY_FEE_BTC_KVB,
        "minrelaytxfee": MIN_RELAY_FEE_BTC_KVB,
        "incrementalrelayfee": MIN_RELAY_FEE_BTC_KVB,
        "unbroadcastcount": 0,
        "fullrbf": True,
    }


def socket_fees(projection: Projection) -> dict[str, float]:
    """The ``fees`` message (3 decimals), also served by ``/api/v1/fees/precise``."""
    min_fee = math.ceil(MIN_RELAY_FEE_BTC_KVB * 100_000)
    return {k: round(v, 3) for k, v in recommended_fees(projection.blocks, float(min_fee)).items()}


def prices(usd: float, now: float, *, up: bool = True) -> dict[str, Any]:
    """The ``conversions`` message; ``-1`` when the instance knows no price."""
    dollars = round(usd) if up else -1
    return {
        "time": int(now),
        "USD": dollars,
        "EUR": round(dollars * 0.92),
        "GBP": round(dollars * 0.79),
        "CAD": round(dollars * 1.37),
        "CHF": round(dollars * 0.88),
        "AUD": round(dollars * 1.52),
        "JPY": round(dollars * 151.0),
    }


def copy_tx(tx: Mapping[str, Any]) -> Tx:
    """A copy deep enough that mutating the result never touches the original."""
    out = dict(tx)
    out["vin"] = [
        {**i, "prevout": dict(i["prevout"]) if i.get("prevout") else i.get("prevout")}
        for i in tx["vin"]
    ]
    out["vout"] = [dict(o) for o in tx["vout"]]
    for key in ("status", "position"):
        if isinstance(tx.get(key), Mapping):
            out[key] = dict(tx[key])
    return out


def copy_block(block: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a block object with its own ``extras``."""
    out = dict(block)
    extras = dict(block["extras"])
    extras["pool"] = dict(extras["pool"])
    extras["feeRange"] = list(extras["feeRange"])
    out["extras"] = extras
    return out


def prevout_of(address: str, value: int) -> dict[str, Any]:
    """An esplora ``prevout`` (or output) paying ``value`` sats to ``address``."""
    return {
        "scriptpubkey_type": script_type(address),
        "scriptpubkey_address": address,
        "value": value,
    }


def output_of(address: str, value: int) -> dict[str, Any]:
    """An output; the address ``""`` makes an OP_RETURN-like output with no address key."""
    if not address:
        return {"scriptpubkey_type": "op_return", "value": value}
    return prevout_of(address, value)


def split_value(
    rng: random.Random, total: int, n: int, address: Callable[[], str]
) -> list[tuple[str, int]]:
    """Split ``total`` sats into n random positive parts, each from a fresh address."""
    if n <= 1:
        return [(address(), total)]
    cuts = sorted(rng.randint(1, max(1, total - 1)) for _ in range(n - 1))
    bounds = [0, *cuts, total]
    return [(address(), max(1, b - a)) for a, b in itertools.pairwise(bounds)]


def bounded_put(store: OrderedDict[Any, Any], key: Any, value: Any, limit: int) -> None:
    """Insert as the newest entry, dropping the oldest beyond ``limit``."""
    store[key] = value
    store.move_to_end(key)
    while len(store) > limit:
        store.popitem(last=False)
