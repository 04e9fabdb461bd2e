"""The simulated block chain: kept blocks, their txids, confirmed tx bodies and stale blocks."""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from exporter.sim.txmath import (
    COIN,
    FLAG_RBF,
    FLAG_SIGHASH_ALL,
    FLAG_V2,
    SEQUENCE_FINAL,
    SEQUENCE_RBF,
    Tx,
    bounded_put,
    fee_range,
    median,
    output_of,
    stripped,
    tx_flags,
    tx_rate,
)

MAX_CONFIRMED_BODIES = 10_000
MAX_KEPT_BLOCKS = 100
MAX_SUMMARY_BLOCKS = 32
INITIAL_TIP_HEIGHT = 900_000
_POOLS = (
    (111, "Foundry USA", "foundryusa"),
    (36, "AntPool", "antpool"),
    (44, "ViaBTC", "viabtc"),
    (73, "F2Pool", "f2pool"),
    (94, "SpiderPool", "spiderpool"),
    (43, "MARA Pool", "marapool"),
)


@dataclass
class Block:
    """A block object as the backend sends it, with its txids in block order (coinbase first).

    ``known`` holds the summary entries of the txs the simulator built (kept for the last
    ``MAX_SUMMARY_BLOCKS`` blocks); other txs are summarised as small payments.
    """

    block: dict[str, Any]
    txids: list[str]
    known: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> list[dict[str, Any]]:
        """``/api/v1/block/:hash/summary``: every tx as ``{txid, fee, vsize, value, rate, flags,
        time}``, ``value`` being the gross output sum."""
        block_time = int(self.block["timestamp"])
        return [self.known.get(t) or unseen_entry(t, block_time) for t in self.txids]


def summary_entry(tx: Mapping[str, Any]) -> dict[str, Any]:
    """One tx as the block summary lists it."""
    return {
        **stripped(tx),
        "flags": tx_flags(tx),
        "time": int(tx.get("firstSeen") or 0),
    }


def unseen_entry(txid: str, block_time: int) -> dict[str, Any]:
    """A summary entry for a tx whose body the simulator never built: a small payment."""
    value = 10_000 + int(txid[:5], 16)  # at most about 0.01 BTC
    return {
        "txid": txid,
        "fee": 1_000,
        "vsize": 250,
        "value": value,
        "rate": 4.0,
        "flags": FLAG_SIGHASH_ALL | FLAG_V2 | FLAG_RBF,
        "time": block_time,
    }


def unseen_tx(txid: str, block: Mapping[str, Any]) -> Tx:
    """A confirmed body for a tx the simulator never built, matching its `unseen_entry`."""
    entry = unseen_entry(txid, int(block["timestamp"]))
    prevout = output_of("bc1q" + txid[:38], entry["value"] + entry["fee"])
    return {
        "txid": txid, "version": 2, "locktime": 0,
        "vin": [{"txid": txid[::-1], "vout": 0, "is_coinbase": False,
                 "sequence": SEQUENCE_RBF, "prevout": prevout}],
        "vout": [output_of("bc1q" + txid[-38:], entry["value"])],
        "size": 250, "weight": 1_000, "fee": entry["fee"],
        "status": {"confirmed": True, "block_height": block["height"],
                   "block_hash": block["id"], "block_time": block["timestamp"]},
    }  # fmt: skip


class Chain:
    """The best chain (the last ``MAX_KEPT_BLOCKS`` blocks) plus bodies of recently mined txs."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.blocks: list[Block] = []
        self.by_hash: OrderedDict[str, Block] = OrderedDict()
        self.tx_block: dict[str, str] = {}
        self.confirmed: OrderedDict[str, Tx] = OrderedDict()

    @property
    def tip(self) -> dict[str, Any]:
        """The best block."""
        return self.blocks[-1].block

    def last(self, n: int = 8) -> list[dict[str, Any]]:
        """The last ``n`` blocks, oldest first."""
        return [b.block for b in self.blocks[-n:]]

    def below(self, height: int, n: int) -> list[dict[str, Any]]:
        """Up to ``n`` kept blocks at and below ``height``, highest first."""
        return [b.block for b in reversed(self.blocks) if b.block["height"] <= height][:n]

    def status(self, txid: str) -> dict[str, Any] | None:
        """Esplora's confirmed ``status`` of a mined tx, None if no kept block holds it."""
        block_hash = self.tx_block.get(txid)
        entry = self.by_hash.get(block_hash) if block_hash else None
        if entry is None:
            return None
        block = entry.block
        return {
            "confirmed": True,
            "block_height": block["height"],
            "block_hash": block["id"],
            "block_time": block["timestamp"],
        }

    def _hex(self, nbytes: int = 32) -> str:
        return f"{self._rng.getrandbits(nbytes * 8):0{nbytes * 2}x}"

    def _block_hash(self) -> str:
        return "0" * 19 + self._hex()[19:]

    def make_block(
        self,
        height: int,
        previous: str,
        txids: Sequence[str],
        bodies: Sequence[Mapping[str, Any]],
        *,
        timestamp: int,
        stale: bool = False,
    ) -> dict[str, Any]:
        """A block object with mempool's ``extras`` for these txs (not appended)."""
        rng = self._rng
        rates = sorted((tx_rate(t) for t in bodies), reverse=True)
        fees = sum(int(t["fee"]) for t in bodies)
        subsidy = (50 * COIN) >> (height // 210_000)
        pool_id, pool_name, pool_slug = rng.choice(_POOLS)
        size = 300 + sum(int(t["size"]) for t in bodies)
        weight = 1_200 + sum(int(t["weight"]) for t in bodies)
        recent = [int(b.block["timestamp"]) for b in self.blocks[-11:]] or [timestamp]
        return {
            "id": self._block_hash(),
            "height": height,
            "version": 0x20000000 | rng.getrandbits(13) << 13,
            "timestamp": timestamp,
            "bits": 386_018_797,
            "nonce": rng.getrandbits(32),
            "difficulty": 110_568_428_300_952.7,
            "merkle_root": self._hex(),
            "tx_count": len(txids),
            "size": size,
            "weight": weight,
            "previousblockhash": previous,
            "mediantime": int(median([float(t) for t in recent])),
            "stale": stale,
            "extras": {
                "totalFees": fees,
                "medianFee": round(median(rates), 2),
                "feeRange": fee_range(rates, 7),
                "reward": subsidy + fees,
                "pool": {"id": pool_id, "name": pool_name, "slug": pool_slug},
                "avgFee": fees // max(1, len(bodies)),
                "avgFeeRate": round(sum(rates) / max(1, len(rates))),
                "coinbaseRaw": self._hex(40),
                "matchRate": 100,
                "expectedFees": fees,
                "expectedWeight": weight,
                "similarity": 1,
            },
        }

    def _coinbase(self, txid: str, height: int, reward: int, address: str) -> Tx:
        return {
            "txid": txid,
            "version": 2,
            "locktime": 0,
            "vin": [
                {
                    "txid": "0" * 64,
                    "vout": 0xFFFFFFFF,
                    "is_coinbase": True,
                    "sequence": SEQUENCE_FINAL,
                    "prevout": None,
                    "scriptsig": f"03{height.to_bytes(3, 'little').hex()}",
                }
            ],
            "vout": [output_of(address, reward)],
            "size": 250,
            "weight": 1_000,
            "fee": 0,
            "status": {"confirmed": False},
        }

    def append(self, txids: Sequence[str], bodies: Sequence[Tx], *, now: int, payout: str) -> Block:
        """Mine txids (bodies for those known) on the tip; a coinbase paying ``payout`` leads."""
        tip = self.blocks[-1].block if self.blocks else None
        height = int(tip["height"]) + 1 if tip else INITIAL_TIP_HEIGHT
        previous = str(tip["id"]) if tip else self._block_hash()
        if tip is not None:
            now = max(now, int(tip["timestamp"]) + 1)
        coinbase_txid = self._hex()
        all_txids = [coinbase_txid, *txids]
        block = self.make_block(height, previous, all_txids, bodies, timestamp=now)
        coinbase = self._coinbase(coinbase_txid, height, int(block["extras"]["reward"]), payout)
        known = {str(b["txid"]): summary_entry(b) for b in (coinbase, *bodies)}
        entry = Block(block, all_txids, known)
        self.blocks.append(entry)
        self.by_hash[str(block["id"])] = entry
        status = {
            "confirmed": True,
            "block_height": height,
            "block_hash": block["id"],
            "block_time": block["timestamp"],
        }
        for txid in all_txids:
            self.tx_block[txid] = str(block["id"])
        for body in (coinbase, *bodies):
            body["status"] = dict(status)
            body.pop("position", None)
            bounded_put(self.confirmed, str(body["txid"]), body, MAX_CONFIRMED_BODIES)
        self._trim()
        return entry

    def _trim(self) -> None:
        if len(self.blocks) > MAX_SUMMARY_BLOCKS:
            self.blocks[-MAX_SUMMARY_BLOCKS - 1].known.clear()
        while len(self.blocks) > MAX_KEPT_BLOCKS:
            del self.blocks[0]
        while len(self.by_hash) > MAX_KEPT_BLOCKS + 32:
            _, old = self.by_hash.popitem(last=False)
            for txid in old.txids:
                if self.tx_block.get(txid) == old.block["id"]:
                    del self.tx_block[txid]

    def build_history(self, now: float, payout: Callable[[], str], blocks: int = 10) -> None:
        """Blocks of never-seen txs, ten minutes apart, ending before ``now``."""
        start = int(now) - 600 * blocks
        for k in range(blocks):
            n = self._rng.randint(500, 3_000)
            txids = [self._hex() for _ in range(n)]
            self.append(txids, [], now=start + 600 * k, payout=payout())

    def stale_sibling(self, txids: Sequence[str], bodies: Sequence[Tx], now: int) -> dict[str, Any]:
        """A stale block at the tip's height (kept by hash, changes nothing else)."""
        tip = self.blocks[-1].block
        parent = self.blocks[-2].block
        block = self.make_block(
            int(tip["height"]), str(parent["id"]), [self._hex(), *txids], bodies,
            timestamp=now, stale=True,
        )  # fmt: skip
        self.by_hash[str(block["id"])] = Block(block, [])
        return block

    def disconnect(self, depth: int) -> list[Tx]:
        """Drop the last ``depth`` blocks (kept by hash as stale); return their non-coinbase txs."""
        if not 1 <= depth < len(self.blocks):
            raise ValueError(f"reorg depth must be 1..{len(self.blocks) - 1}")
        dropped = self.blocks[-depth:]
        del self.blocks[-depth:]
        back: list[Tx] = []
        for old in dropped:
            old.block["stale"] = True
            for txid in old.txids:
                if self.tx_block.get(txid) == old.block["id"]:
                    del self.tx_block[txid]
                body = self.confirmed.pop(txid, None)
                if body is not None and not body["vin"][0].get("is_coinbase"):
                    body["status"] = {"confirmed": False}
                    back.append(body)
        return back
