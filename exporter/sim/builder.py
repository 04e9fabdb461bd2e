"""Building transactions for the simulated mempool: addresses, scripted txs, random traffic.

Deterministic from the seeded ``random.Random`` it is given; the caller passes ``now``.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from exporter.sim.txmath import (
    COIN,
    SEQUENCE_FINAL,
    SEQUENCE_RBF,
    Outpoint,
    Tx,
    bounded_put,
    copy_tx,
    output_of,
    prevout_of,
    split_value,
    tx_flags,
)

MAX_BUILT = 2_000
MAX_PREVOUT_INDEX = 50_000

_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_SEGWIT_TYPES = frozenset({"v0_p2wpkh", "v0_p2wsh", "v1_p2tr", "p2sh"})

# Addresses the CLI hands to whales by default so a demo shows exchange flows.
DEMO_EXCHANGE_ADDRESSES: Mapping[str, str] = {
    "bc1qm34lsc65zpw79lxes69zkqmk6ee3ewf0j77s3h": "Binance",
    "34xp4vRoCGJym3xR7yCVPFHoCNxv4Twseo": "Binance",
    "bc1qgdjqv0av3q56jvd82tkdjpy7gdp9ut8tlqmgrpmv24sq90ecnvqqjwvw97": "Bitfinex",
    "3M219KR5vEneNb47ewrPfWyb5jQ2DjxRP6": "Bitfinex",
    "bc1qa5wkgaew2dkv56kfvj49j0av5nml45x9ek9hz6": "Kraken",
    "3FHNBLobJnbCTFTVakh5TXmEneyf5PT61B": "Coinbase",
    "bc1q7cyrfmck2ffu2ud3rn5l5a8yv6f0chkp0zpemf": "Coinbase",
}


class TxBuilder:
    """Makes esplora-shape txs with mempool extras and remembers recent ones and their prevouts.

    ``lookup`` finds a tx the mempool or chain knows, so a tx spending its outputs reuses them.
    """

    def __init__(
        self,
        rng: random.Random,
        lookup: Callable[[str], Mapping[str, Any] | None],
        exchange_addresses: Mapping[str, str] | None = None,
    ) -> None:
        self.rng = rng
        self.exchange_addresses: dict[str, str] = dict(exchange_addresses or {})
        self._lookup = lookup
        self._built: OrderedDict[str, Tx] = OrderedDict()
        self._prevouts: OrderedDict[Outpoint, dict[str, Any] | None] = OrderedDict()

    def built(self, txid: str) -> Tx | None:
        """A copy of a tx built recently (added to the mempool or not), if remembered."""
        tx = self._built.get(txid)
        return copy_tx(tx) if tx is not None else None

    def hex(self, nbytes: int = 32) -> str:
        """Random hex digits, as in txids and block hashes."""
        return f"{self.rng.getrandbits(nbytes * 8):0{nbytes * 2}x}"

    def random_address(self) -> str:
        """A random mainnet-looking address (no valid checksum)."""
        rng = self.rng
        r = rng.random()
        if r < 0.55:
            return "bc1q" + "".join(rng.choices(_BECH32, k=38))
        if r < 0.65:
            return "bc1q" + "".join(rng.choices(_BECH32, k=58))
        if r < 0.8:
            return "bc1p" + "".join(rng.choices(_BECH32, k=58))
        if r < 0.9:
            return "1" + "".join(rng.choices(_BASE58, k=33))
        return "3" + "".join(rng.choices(_BASE58, k=33))

    def make_tx(
        self,
        *,
        now: float,
        outputs: Sequence[tuple[str, int]],
        inputs: Sequence[tuple[str, int]] | None = None,
        fee_rate: float = 10.0,
        rbf_signal: bool = True,
        vsize: int = 250,
        spends: Sequence[tuple[str, int]] | None = None,
        prevouts: bool = True,
        txid: str | None = None,
    ) -> dict[str, Any]:
        """Build a full esplora-shape tx with mempool extras (it is not added to the mempool).

        ``fee`` is always ``round(fee_rate * vsize)``. Without ``inputs`` one input covers
        outputs + fee; with ``spends`` (outpoints, e.g. a tx's own ``vin`` to build a conflicting
        replacement) the prevouts of known outpoints are reused. Explicit ``inputs`` are taken
        as given. An output address ``""`` makes an OP_RETURN-like output with no address key.
        """
        if not outputs:
            raise ValueError("a transaction needs at least one output")
        if vsize <= 0:
            raise ValueError("vsize must be positive")
        fee = round(fee_rate * vsize)
        needed = sum(int(v) for _, v in outputs) + fee
        outpoints: list[Outpoint]
        prevs: list[dict[str, Any] | None]
        if inputs is not None:
            if spends is not None and len(spends) != len(inputs):
                raise ValueError("inputs and spends must have the same length")
            outpoints = (
                [(t, int(v)) for t, v in spends]
                if spends is not None
                else [(self.hex(), self.rng.randint(0, 3)) for _ in inputs]
            )
            prevs = [prevout_of(a, int(v)) for a, v in inputs]
        elif spends:
            outpoints = [(t, int(v)) for t, v in spends]
            known = [self.known_prevout(op) for op in outpoints]
            missing = [i for i, p in enumerate(known) if p is None]
            have = sum(int(p["value"]) for p in known if p is not None)
            share = max(0, needed - have) // max(1, len(missing))
            prevs = [
                p if p is not None else prevout_of(self.random_address(), share) for p in known
            ]
        else:
            outpoints = [(self.hex(), self.rng.randint(0, 3))]
            prevs = [prevout_of(self.random_address(), needed)]

        sequence = SEQUENCE_RBF if rbf_signal else SEQUENCE_FINAL
        vin = [
            {
                "txid": op[0],
                "vout": op[1],
                "is_coinbase": False,
                "sequence": sequence,
                "prevout": dict(p) if prevouts and p is not None else None,
            }
            for op, p in zip(outpoints, prevs, strict=True)
        ]
        vout = [output_of(address, int(value)) for address, value in outputs]
        first_type = prevs[0]["scriptpubkey_type"] if prevs and prevs[0] else "p2pkh"
        if first_type in _SEGWIT_TYPES and vsize >= 16:
            weight = 4 * vsize - self.rng.randint(0, 3)
            witness = weight % 4 + 4 * (vsize * 3 // 16)
            size = (weight - witness) // 4 + witness
        else:
            weight, size = 4 * vsize, vsize
        rate = fee / vsize
        tx: Tx = {
            "txid": txid or self.hex(),
            "version": 2,
            "locktime": 0,
            "vin": vin,
            "vout": vout,
            "size": size,
            "weight": weight,
            "fee": fee,
            "status": {"confirmed": False},
            "vsize": vsize,
            "feePerVsize": rate,
            "adjustedFeePerVsize": rate,
            "effectiveFeePerVsize": rate,
            "firstSeen": int(now),
            "position": {"block": 0, "vsize": vsize / 2},
        }
        tx["flags"] = tx_flags(tx)
        for op, p in zip(outpoints, prevs, strict=True):
            bounded_put(self._prevouts, op, p, MAX_PREVOUT_INDEX)
        bounded_put(self._built, tx["txid"], tx, MAX_BUILT)
        return copy_tx(tx)

    def known_prevout(self, op: Outpoint) -> dict[str, Any] | None:
        """The output an outpoint spends, when a known tx (or a built input) holds it."""
        parent = self._lookup(op[0]) or self._built.get(op[0])
        if parent is not None and op[1] < len(parent["vout"]):
            return dict(parent["vout"][op[1]])
        return self._prevouts.get(op)

    def _fee_rate(self) -> float:
        rng = self.rng
        r = rng.random()
        if r < 0.12:
            return rng.uniform(1.0, 2.0)
        if r < 0.95:
            return max(1.0, rng.lognormvariate(math.log(9.0), 0.6))
        return rng.uniform(50.0, 400.0)

    def random_tx(self, now: float) -> dict[str, Any]:
        """A realistic ordinary tx: log-normal values, a fee spread, sometimes batches."""
        rng = self.rng
        r = rng.random()
        n_in = rng.randint(5, 30) if r < 0.04 else rng.choice((1, 1, 1, 2, 2, 3))
        n_out = rng.randint(8, 60) if 0.04 <= r < 0.07 else rng.choice((1, 2, 2, 2, 3))
        values = [max(546, int(rng.lognormvariate(math.log(400_000), 2.0))) for _ in range(n_out)]
        addresses = [self.random_address() for _ in values]
        if rng.random() < 0.03:
            addresses.append("")
            values.append(0)
        vsize = 11 + 68 * n_in + 31 * len(values) + rng.randint(0, 40)
        fee_rate = self._fee_rate()
        total = sum(values) + round(fee_rate * vsize)
        inputs = split_value(rng, total, n_in, self.random_address)
        return self.make_tx(
            now=now,
            outputs=list(zip(addresses, values, strict=True)),
            inputs=inputs,
            fee_rate=fee_rate,
            rbf_signal=rng.random() < 0.7,
            vsize=vsize,
        )

    def random_whale(self, now: float) -> dict[str, Any]:
        """A >=100 BTC tx, sometimes to/from/between exchange addresses, sometimes with change."""
        rng = self.rng
        amount = int(100 * COIN * math.exp(rng.uniform(0, math.log(50))))
        if rng.random() < 0.3:
            amount = amount // COIN * COIN
        by_entity: dict[str, list[str]] = {}
        for address, entity in self.exchange_addresses.items():
            by_entity.setdefault(entity, []).append(address)
        source = self.random_address()
        target = self.random_address()
        kind = rng.choice(("inflow", "outflow", "internal", "plain")) if by_entity else "plain"
        if kind == "inflow":
            target = rng.choice(rng.choice(list(by_entity.values())))
        elif kind == "outflow":
            source = rng.choice(rng.choice(list(by_entity.values())))
        elif kind == "internal":
            addresses = rng.choice(list(by_entity.values()))
            source, target = rng.choice(addresses), rng.choice(addresses)
        outputs = [(target, amount)]
        change = 0
        if rng.random() < 0.5:
            change = int(rng.uniform(0.001, 50) * COIN)
            change_to = source if rng.random() < 0.5 else self.random_address()
            outputs.append((change_to, change))
            rng.shuffle(outputs)
        vsize = rng.randint(150, 900)
        fee_rate = max(2.0, rng.lognormvariate(math.log(15.0), 0.7))
        total = amount + change + round(fee_rate * vsize)
        n_in = rng.choice((1, 1, 2, 3))
        inputs = [(source, v) for _, v in split_value(rng, total, n_in, self.random_address)]
        return self.make_tx(
            now=now,
            outputs=outputs,
            inputs=inputs,
            fee_rate=fee_rate,
            vsize=vsize,
            rbf_signal=True,
        )
