"""A large low-fee tail for the simulated mempool, cheap enough for 700,000 transactions.

Nothing is stored per transaction but its place in txid order: each tx is a pure function of
its index (txid, values, addresses), made on demand when a route serves it. Txids come from
four bijective 64-bit mixes of the index, so a txid maps back to its index without a dict.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from array import array
from collections.abc import Iterator

from exporter.sim.txmath import COIN, SEQUENCE_RBF, Tx

MASK = (1 << 64) - 1
_ODD = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93)
_INV = tuple(pow(odd, -1, 1 << 64) for odd in _ODD)
_TO_BECH32 = str.maketrans("0123456789abcdef", "qpzry9x8gf2tvdw0")


def _mix(x: int, odd: int, key: int) -> int:
    x ^= x >> 32
    x = ((x + key) * odd) & MASK
    return x ^ (x >> 32)


def _unmix(y: int, inverse: int, key: int) -> int:
    y ^= y >> 32
    y = (y * inverse - key) & MASK
    return y ^ (y >> 32)


class BulkTail:
    """``count`` unannounced txs paying 1-2 sat/vB, below every projected-block list.

    Every ``whale_every``-th tx (0: none) moves 100-300 BTC; the others under 0.5 BTC. The
    txids live in one buffer (32 bytes each); the first 8 bytes are a bijective mix of the
    index, so a txid maps back to its index without a dict.
    """

    def __init__(self, count: int, *, seed: int, now: float, whale_every: int = 0) -> None:
        self._key = random.Random(seed).getrandbits(64)
        self._salt = seed.to_bytes(8, "big", signed=True)
        self.count = count
        self.whale_every = whale_every
        self._now = int(now)
        self.removed: set[int] = set()
        key, odd, salt = self._key, _ODD[0], self._salt
        buf = bytearray()
        heads: list[int] = []
        self.vsize = self.fees = 0
        for i in range(count):
            head = _mix(i, odd, key)
            heads.append(head)
            buf += head.to_bytes(8, "big")
            buf += hashlib.blake2b(i.to_bytes(8, "big"), digest_size=24, salt=salt).digest()
            vsize, fee = _size(int.from_bytes(buf[-24:-16], "big"))
            self.vsize += vsize
            self.fees += fee
        self._ids = bytes(buf)
        heads.sort()
        self._order = array("Q", heads)

    def __len__(self) -> int:
        return self.count - len(self.removed)

    def txid(self, i: int) -> str:
        """The txid of index ``i``."""
        return self._ids[32 * i : 32 * i + 32].hex()

    def index(self, txid: str) -> int | None:
        """The index of a txid still in the tail, or None."""
        try:
            raw = bytes.fromhex(txid)
        except ValueError:
            return None
        if len(raw) != 32:
            return None
        i = _unmix(int.from_bytes(raw[:8], "big"), _INV[0], self._key)
        if i >= self.count or i in self.removed or self._ids[32 * i : 32 * i + 32] != raw:
            return None
        return i

    def __contains__(self, txid: object) -> bool:
        return isinstance(txid, str) and self.index(txid) is not None

    def txids(self) -> Iterator[str]:
        """Every txid still in the tail (index order)."""
        ids, removed = self._ids, self.removed
        return (
            ids[k : k + 32].hex() for k in range(0, 32 * self.count, 32) if k // 32 not in removed
        )

    def after(self, last: str | None, limit: int) -> list[tuple[str, int]]:
        """Up to ``limit`` (txid, index) pairs in txid order, txids strictly after ``last``."""
        start = 0
        if last is not None:
            try:
                head = int(last[:16].ljust(16, "0"), 16)
            except ValueError:
                head = 0
            start = bisect.bisect_left(self._order, head)
        key, inverse = self._key, _INV[0]
        out: list[tuple[str, int]] = []
        for position in range(start, len(self._order)):
            i = _unmix(self._order[position], inverse, key)
            if i in self.removed:
                continue
            txid = self.txid(i)
            if last is None or txid > last:
                out.append((txid, i))
                if len(out) >= limit:
                    break
        return out

    def take(self, txid: str) -> Tx | None:
        """Remove a tx from the tail and return its body (None if not there)."""
        i = self.index(txid)
        if i is None:
            return None
        body = self.tx(i)
        self.removed.add(i)
        self.vsize -= int(body["vsize"])
        self.fees -= int(body["fee"])
        return body

    def get(self, txid: str) -> Tx | None:
        """A tx's full body (esplora shape with prevouts and mempool extras)."""
        i = self.index(txid)
        return None if i is None else self.tx(i)

    def tx(self, i: int, *, extras: bool = True) -> Tx:
        """The body of index ``i`` (esplora's shape alone without ``extras``)."""
        raw = self._ids[32 * i : 32 * i + 32]
        txid = raw.hex()
        h = int.from_bytes(raw[8:16], "big")
        vsize, fee = _size(h)
        whale = self.whale_every > 0 and i % self.whale_every == self.whale_every // 2
        value = (100 + h % 200) * COIN + h % 1_000 if whale else 10_000 + h % (COIN // 2)
        rate = fee / vsize
        kind = "v0_p2wpkh"
        body: Tx = {
            "txid": txid,
            "version": 2,
            "locktime": 0,
            "vin": [
                {
                    "txid": txid[::-1],
                    "vout": h % 4,
                    "is_coinbase": False,
                    "sequence": SEQUENCE_RBF,
                    "prevout": {
                        "scriptpubkey_type": kind,
                        "scriptpubkey_address": "bc1q" + txid[8:46].translate(_TO_BECH32),
                        "value": value + fee,
                    },
                }
            ],
            "vout": [
                {
                    "scriptpubkey_type": kind,
                    "scriptpubkey_address": "bc1q" + txid[24:62].translate(_TO_BECH32),
                    "value": value,
                }
            ],
            "size": vsize,
            "weight": vsize * 4,
            "fee": fee,
            "status": {"confirmed": False},
        }
        if extras:
            body["vsize"] = vsize
            body["feePerVsize"] = body["adjustedFeePerVsize"] = rate
            body["effectiveFeePerVsize"] = rate
            body["firstSeen"] = self._now - h % 7_200
        return body


def _size(h: int) -> tuple[int, int]:
    """A tail tx's vsize and fee (1.00-1.99 sat/vB) from its hash bits."""
    vsize = 110 + h % 150
    return vsize, round((1.0 + (h >> 8) % 100 / 100) * vsize)
