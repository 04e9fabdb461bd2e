"""A simulated mempool.space backend: WebSocket and REST on one loopback port.

It follows shared/MEMPOOL_PROTOCOL.md (the real backend): a WebSocket upgrade is accepted
on any path (clients use ``/api/v1/ws``), plain HTTP GETs are answered from ``/api/...``.
Tests script it (``add``, ``replace``, ``remove``, ``flush``, ``mine``, ``reorg``) and inject
faults (lost messages, out-of-sync sequence, dropped sockets, HTTP 429, prices down); in auto
mode a background task plays a live mempool with Poisson arrivals, whales, RBF and blocks.

The fee, projection and block maths are pure functions at the top of the module; the
``SimulatedMempool`` class holds the state and the socket shell.

Run it standalone with ``python -m exporter.sim --port 8999``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import http
import itertools
import logging
import math
import random
import signal
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

log = logging.getLogger(__name__)

Tx = dict[str, Any]
Outpoint = tuple[str, int]

COIN = 100_000_000
BLOCK_VSIZE = 1_000_000
LAST_LIST_VSIZE = 1_200_000
PROJECTED_BLOCKS = 8
MAX_CLIENT_FRAME = 50_000
MAX_CLIENT_MESSAGES = 100
CLIENT_MESSAGE_WINDOW = 10.0
MAX_CLIENT_BUFFER = 10_000_000
MAX_TRACKED_TXS = 100
MAX_MEMPOOL_TXS = 50_000
MAX_CONFIRMED_BODIES = 10_000
MAX_KEPT_BLOCKS = 100
MAX_BUILT = 2_000
MAX_PREVOUT_INDEX = 50_000
MAX_LOG_ENTRIES = 10_000
MAX_REFILL = 5_000
INITIAL_MEMPOOL_TXS = 8_000
INITIAL_TIP_HEIGHT = 900_000
MIN_RELAY_FEE_BTC_KVB = 0.00001
SEQUENCE_RBF = 0xFFFFFFFD
SEQUENCE_FINAL = 0xFFFFFFFF

_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_SEGWIT_TYPES = frozenset({"v0_p2wpkh", "v0_p2wsh", "v1_p2tr", "p2sh"})
_ESPLORA_KEYS = ("txid", "version", "locktime", "vin", "vout", "size", "weight", "fee", "status")
_WANT_VALUES = frozenset({"blocks", "mempool-blocks", "live-2h-chart", "stats", "tomahawk"})
_POOLS = (
    (111, "Foundry USA", "foundryusa"),
    (36, "AntPool", "antpool"),
    (44, "ViaBTC", "viabtc"),
    (73, "F2Pool", "f2pool"),
    (94, "SpiderPool", "spiderpool"),
    (43, "MARA Pool", "marapool"),
)

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


# --------------------------------------------------------------------------------------------
# Pure helpers: addresses, flags, projection, fees
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Client:
    """One WebSocket connection and its subscriptions (they do not survive a reconnect)."""

    ws: ServerConnection
    wants: set[str] = field(default_factory=set)
    track_mempool: bool = False
    track_txids: bool = False
    block_index: int | None = None
    block_list: dict[str, list[Any]] = field(default_factory=dict)
    queue: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    buffered: int = 0
    message_times: deque[float] = field(default_factory=deque)
    dead: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Block:
    block: dict[str, Any]
    txids: list[str]


class SimulatedMempool:
    """A faithful stand-in for a mempool.space backend on one loopback port.

    Scripted changes (``add``, ``replace``, ``remove``) accumulate and go out in the next poll
    message (``flush``, or the auto loop every ``poll_interval``); ``mine`` and ``reorg`` send
    their frames at once.
    """

    def __init__(
        self,
        *,
        seed: int = 1,
        auto: bool = True,
        tx_rate: float = 4.0,
        whale_rate: float = 0.2,
        block_interval: float = 30.0,
        poll_interval: float = 1.0,
        exchange_addresses: Mapping[str, str] | None = None,
        prices_up: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._rng = random.Random(seed)
        self._clock = clock
        self.auto = auto
        self.tx_rate = tx_rate
        self.whale_rate = whale_rate
        self.block_interval = block_interval
        self.poll_interval = poll_interval
        self.exchange_addresses: dict[str, str] = dict(exchange_addresses or {})
        self.prices_up = prices_up
        self.rest_429 = 0
        self.client_messages: list[dict[str, Any]] = []
        self.rest_requests: list[str] = []
        self.connection_count = 0

        self._mempool: dict[str, Tx] = {}
        self._spent_by: dict[Outpoint, str] = {}
        self._pending_added: dict[str, Tx] = {}
        self._pending_removed: dict[str, None] = {}
        self._pending_replaced: list[tuple[str, str]] = []
        self._replaced_by: dict[str, str] = {}  # old txid -> its replacement, for /v1/tx/:txid/rbf
        self._sequence = 0
        self._in_sync = True
        self._chain: list[_Block] = []
        self._blocks_by_hash: OrderedDict[str, _Block] = OrderedDict()
        self._tx_block: dict[str, str] = {}
        self._confirmed: OrderedDict[str, Tx] = OrderedDict()
        self._built: OrderedDict[str, Tx] = OrderedDict()
        self._prevouts: OrderedDict[Outpoint, dict[str, Any] | None] = OrderedDict()
        self._recent: deque[dict[str, Any]] = deque(maxlen=10)
        self._new_txs: deque[dict[str, Any]] = deque(maxlen=6)
        self._arrivals: deque[tuple[float, int]] = deque()
        self._whales: deque[str] = deque(maxlen=100)
        self._usd = 95_000.0 + self._rng.uniform(-5_000, 5_000)
        self._clients: set[_Client] = set()
        self._server: Server | None = None
        self._auto_task: asyncio.Task[None] | None = None
        self._port = 0
        self._host = "127.0.0.1"
        self._projection: Projection | None = None
        self._changed = asyncio.Event()

        self._build_history()
        if auto:
            self._seed_mempool()

    # ---------------------------------------------------------------- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on host:port (0 picks a free port) and start the auto loop if enabled."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._server = await serve(
            self._handle,
            host,
            port,
            process_request=self._process_request,
            max_size=MAX_CLIENT_FRAME,
            ping_interval=None,
            compression=None,
            close_timeout=5,
            logger=logging.getLogger(f"{__name__}.ws"),
        )
        self._host = host
        self._port = int(next(iter(self._server.sockets)).getsockname()[1])
        if self.auto:
            self._auto_task = asyncio.create_task(self._auto_loop(), name="simulator-auto")

    async def stop(self) -> None:
        """Stop the auto loop, close every socket and the listener; safe to call twice."""
        task, self._auto_task = self._auto_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def __aenter__(self) -> SimulatedMempool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The bound TCP port (after ``start``)."""
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``; the socket is at ``/api/v1/ws``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    # ---------------------------------------------------------------- introspection

    @property
    def mempool(self) -> Mapping[str, dict[str, Any]]:
        """The current mempool (scripted changes included before they are flushed)."""
        return MappingProxyType(self._mempool)

    @property
    def tip_height(self) -> int:
        """Height of the best block."""
        return int(self._chain[-1].block["height"])

    @property
    def sequence(self) -> int:
        """The last ``mempool-transactions`` sequence number used."""
        return self._sequence

    @property
    def connections(self) -> int:
        """WebSocket clients currently connected."""
        return len(self._clients)

    @property
    def blocks(self) -> list[dict[str, Any]]:
        """The chain's kept blocks, oldest first."""
        return [b.block for b in self._chain]

    async def wait_until(self, condition: Callable[[SimulatedMempool], bool]) -> None:
        """Wait until ``condition(self)`` holds; wrap it in ``asyncio.timeout``.

        The condition is re-checked whenever a client connects, disconnects or sends a message,
        and whenever a REST request arrives.
        """
        while True:
            changed = self._changed
            if condition(self):
                return
            await changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # ---------------------------------------------------------------- building transactions

    def random_address(self) -> str:
        """A random mainnet-looking address (no valid checksum)."""
        rng = self._rng
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

    def _hex(self, nbytes: int = 32) -> str:
        return f"{self._rng.getrandbits(nbytes * 8):0{nbytes * 2}x}"

    def make_tx(
        self,
        *,
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
                else [(self._hex(), self._rng.randint(0, 3)) for _ in inputs]
            )
            prevs = [_prevout(a, int(v)) for a, v in inputs]
        elif spends:
            outpoints = [(t, int(v)) for t, v in spends]
            known = [self._known_prevout(op) for op in outpoints]
            missing = [i for i, p in enumerate(known) if p is None]
            have = sum(int(p["value"]) for p in known if p is not None)
            share = max(0, needed - have) // max(1, len(missing))
            prevs = [p if p is not None else _prevout(self.random_address(), share) for p in known]
        else:
            outpoints = [(self._hex(), self._rng.randint(0, 3))]
            prevs = [_prevout(self.random_address(), needed)]

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
        vout = [_output(address, int(value)) for address, value in outputs]
        first_type = prevs[0]["scriptpubkey_type"] if prevs and prevs[0] else "p2pkh"
        if first_type in _SEGWIT_TYPES and vsize >= 16:
            weight = 4 * vsize - self._rng.randint(0, 3)
            witness = weight % 4 + 4 * (vsize * 3 // 16)
            size = (weight - witness) // 4 + witness
        else:
            weight, size = 4 * vsize, vsize
        rate = fee / vsize
        tx: Tx = {
            "txid": txid or self._hex(),
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
            "firstSeen": int(self._clock()),
            "position": {"block": 0, "vsize": vsize / 2},
        }
        tx["flags"] = tx_flags(tx)
        for op, p in zip(outpoints, prevs, strict=True):
            _bounded_put(self._prevouts, op, p, MAX_PREVOUT_INDEX)
        _bounded_put(self._built, tx["txid"], tx, MAX_BUILT)
        return copy_tx(tx)

    def _known_prevout(self, op: Outpoint) -> dict[str, Any] | None:
        parent = self._mempool.get(op[0]) or self._confirmed.get(op[0]) or self._built.get(op[0])
        if parent is not None and op[1] < len(parent["vout"]):
            return dict(parent["vout"][op[1]])
        return self._prevouts.get(op)

    def _fee_rate(self) -> float:
        rng = self._rng
        r = rng.random()
        if r < 0.12:
            return rng.uniform(1.0, 2.0)
        if r < 0.95:
            return max(1.0, rng.lognormvariate(math.log(9.0), 0.6))
        return rng.uniform(50.0, 400.0)

    def random_tx(self) -> dict[str, Any]:
        """A realistic ordinary tx: log-normal values, a fee spread, sometimes batches."""
        rng = self._rng
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
        inputs = _split(rng, total, n_in, self.random_address)
        tx = self.make_tx(
            outputs=list(zip(addresses, values, strict=True)),
            inputs=inputs,
            fee_rate=fee_rate,
            rbf_signal=rng.random() < 0.7,
            vsize=vsize,
        )
        return tx

    def random_whale(self) -> dict[str, Any]:
        """A >=100 BTC tx, sometimes to/from/between exchange addresses, sometimes with change."""
        rng = self._rng
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
        inputs = [(source, v) for _, v in _split(rng, total, n_in, self.random_address)]
        return self.make_tx(
            outputs=outputs, inputs=inputs, fee_rate=fee_rate, vsize=vsize, rbf_signal=True
        )

    # ---------------------------------------------------------------- scripted changes

    def add(self, tx: Mapping[str, Any]) -> None:
        """Enter a tx; one spending a mempool tx's outpoint replaces it (n conflicts, n pairs)."""
        new: Tx = copy_tx(dict(tx))
        txid = str(new["txid"])
        if txid in self._mempool:
            return
        conflicts = list(
            dict.fromkeys(
                other
                for i in new["vin"]
                if (other := self._spent_by.get((i["txid"], int(i["vout"])))) is not None
            )
        )
        for old in conflicts:
            self._drop(old)
            self._pending_replaced.append((old, txid))
            self._link(old, txid)
        if conflicts:
            new["flags"] = int(new.get("flags") or tx_flags(new)) | FLAG_REPLACEMENT
        self._insert(new)

    def replace(self, old_txid: str, new_tx: Mapping[str, Any]) -> None:
        """RBF: next poll has old in ``removed``, new in ``added`` and the pair in ``replaced``."""
        self._drop(old_txid)
        new: Tx = copy_tx(dict(new_tx))
        new["flags"] = int(new.get("flags") or tx_flags(new)) | FLAG_REPLACEMENT
        self.add(new)
        pair = (old_txid, str(new["txid"]))
        if pair not in self._pending_replaced:
            self._pending_replaced.append(pair)
        self._link(old_txid, pair[1])

    def _link(self, old: str, new: str) -> None:
        self._replaced_by[old] = new
        while len(self._replaced_by) > MAX_CONFIRMED_BODIES:
            del self._replaced_by[next(iter(self._replaced_by))]

    def remove(self, txid: str) -> None:
        """Evict/expire a tx (and its descendants): they show in the next poll's ``removed``."""
        self._drop(txid)

    def _insert(self, tx: Tx) -> None:
        txid = str(tx["txid"])
        tx["status"] = {"confirmed": False}
        self._mempool[txid] = tx
        for i in tx["vin"]:
            self._spent_by[(i["txid"], int(i["vout"]))] = txid
        if txid in self._pending_removed:
            del self._pending_removed[txid]  # clients still hold it
        else:
            self._pending_added[txid] = tx
        short = stripped(tx)
        self._recent.append({k: short[k] for k in ("txid", "fee", "vsize", "value")})
        self._new_txs.append(short)
        vsize = tx_vsize(tx)
        self._arrivals.append((self._clock(), vsize))
        if len(self._mempool) > MAX_MEMPOOL_TXS:
            lowest = min(self._mempool.values(), key=tx_rate)
            self._drop(str(lowest["txid"]))

    def _take(self, txid: str) -> Tx | None:
        """Remove one tx from the mempool and its indexes, reporting nothing."""
        tx = self._mempool.pop(txid, None)
        if tx is None:
            return None
        for i in tx["vin"]:
            op = (i["txid"], int(i["vout"]))
            if self._spent_by.get(op) == txid:
                del self._spent_by[op]
        return tx

    def _drop(self, txid: str) -> None:
        """Remove a tx and its descendants as evicted/replaced/conflicted (``removed``)."""
        tx = self._mempool.get(txid)
        if tx is None:
            return
        for n in range(len(tx["vout"])):
            child = self._spent_by.get((txid, n))
            if child is not None and child != txid:
                self._drop(child)
        self._take(txid)
        if self._pending_added.pop(txid, None) is None:
            self._pending_removed[txid] = None

    # ---------------------------------------------------------------- fault injection

    def skip_sequence(self, n: int = 1) -> None:
        """Lose n messages: the counter advances without sending, so clients see a jump."""
        self._sequence += n

    def set_in_sync(self, in_sync: bool) -> None:
        """Out of sync, messages keep flowing with the sequence repeated."""
        self._in_sync = in_sync

    async def drop_connections(self) -> None:
        """Close every client WebSocket (1001) and wait until their handlers have ended."""
        clients = list(self._clients)
        await asyncio.gather(*(c.ws.close(1001, "dropped") for c in clients))
        for client in clients:
            client.queue.put_nowait("")  # wakes the writer so it notices
        await asyncio.gather(*(c.done.wait() for c in clients))

    # ---------------------------------------------------------------- sending

    def _next_sequence(self) -> int:
        if self._in_sync:
            self._sequence += 1
        return self._sequence

    def _refresh_projection(self) -> Projection:
        projection = project(self._mempool.values())
        for txid, tx in self._mempool.items():
            block, offset = projection.positions[txid]
            tx["position"] = {"block": block, "vsize": offset}
            if txid in projection.listed:
                tx["flags"] = int(tx.get("flags") or tx_flags(tx))
            else:
                tx.pop("flags", None)
        self._projection = projection
        return projection

    def _current_projection(self) -> Projection:
        return self._projection or self._refresh_projection()

    async def flush(self) -> int:
        """Send the pending mempool delta now (only if something changed); return its sequence."""
        if not (self._pending_added or self._pending_removed or self._pending_replaced):
            return self._sequence
        sequence = self._next_sequence()
        projection = self._refresh_projection()
        added = list(self._pending_added.values())
        by_txid = {str(t["txid"]): t for t in added}
        replaced = [
            {"replaced": old, "by": by_txid.get(new) or self._mempool[new]}
            for old, new in self._pending_replaced
            if new in by_txid or new in self._mempool
        ]
        delta = {
            "sequence": sequence,
            "added": added,
            "removed": list(self._pending_removed),
            "mined": [],
            "replaced": replaced,
        }
        self._pending_added.clear()
        self._pending_removed.clear()
        self._pending_replaced.clear()
        self._broadcast(delta, projection, block=None, full_lists=False)
        return sequence

    def _txids_delta(self, delta: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "sequence": delta["sequence"],
            "added": [t["txid"] for t in delta["added"]],
            "removed": delta["removed"],
            "mined": delta["mined"],
            "replaced": [
                {"replaced": r["replaced"], "by": r["by"]["txid"]} for r in delta["replaced"]
            ],
        }

    def _broadcast(
        self,
        delta: Mapping[str, Any],
        projection: Projection,
        *,
        block: Mapping[str, Any] | None,
        full_lists: bool,
    ) -> None:
        parts: dict[str, bytes] = {}
        stats: list[tuple[str, bytes]] = []

        def part(key: str, make: Callable[[], Any]) -> bytes:
            if key not in parts:
                parts[key] = orjson.dumps(make())
            return parts[key]

        def stats_parts() -> list[tuple[str, bytes]]:
            if not stats:
                stats.extend((k, orjson.dumps(v)) for k, v in self._stats(projection).items())
            return stats

        for client in list(self._clients):
            frame: list[tuple[str, bytes]] = []
            if block is not None and "blocks" in client.wants:
                frame.append(("block", part("block", lambda: block)))
            if client.track_mempool:
                frame.append(("mempool-transactions", part("mt", lambda: delta)))
            if client.track_txids:
                frame.append(("mempool-txids", part("mtx", lambda: self._txids_delta(delta))))
            if "mempool-blocks" in client.wants:
                frame.append(("mempool-blocks", part("mb", lambda: projection.blocks)))
            if "stats" in client.wants:
                frame.extend(stats_parts())
            if client.block_index is not None:
                pbt = self._block_update(client, projection, full=full_lists)
                if pbt is not None:
                    frame.append(("projected-block-transactions", orjson.dumps(pbt)))
            if frame:
                self._send_raw(client, frame)

    def _block_update(
        self, client: _Client, projection: Projection, *, full: bool
    ) -> dict[str, Any] | None:
        index = client.block_index
        assert index is not None
        entries = projection.lists[index] if index < len(projection.lists) else []
        current = {str(e[0]): e for e in entries}
        previous, client.block_list = client.block_list, current
        if full:
            return {"index": index, "sequence": self._sequence, "blockTransactions": entries}
        added = [e for txid, e in current.items() if txid not in previous]
        removed = [txid for txid in previous if txid not in current]
        changed = [
            [txid, e[4], e[5], False]
            for txid, e in current.items()
            if txid in previous and (previous[txid][4], previous[txid][5]) != (e[4], e[5])
        ]
        if not (added or removed or changed):
            return None
        return {
            "index": index,
            "sequence": self._sequence,
            "delta": {"added": added, "removed": removed, "changed": changed},
        }

    def _send(self, client: _Client, message: Mapping[str, Any]) -> None:
        self._send_raw(client, [(k, orjson.dumps(v)) for k, v in message.items()])

    def _send_raw(self, client: _Client, frame: Sequence[tuple[str, bytes]]) -> None:
        if client.dead:
            return
        body = b",".join(orjson.dumps(key) + b":" + value for key, value in frame)
        text = "{" + body.decode() + "}"
        client.buffered += len(text)
        if client.buffered > MAX_CLIENT_BUFFER:
            # The real backend terminates slow readers at the next send.
            client.dead = True
            client.ws.transport.abort()
            client.queue.put_nowait("")
            return
        client.queue.put_nowait(text)

    # ---------------------------------------------------------------- state snapshots

    def _mempool_info(self) -> dict[str, Any]:
        vbytes = sum(tx_vsize(t) for t in self._mempool.values())
        return {
            "loaded": True,
            "size": len(self._mempool),
            "bytes": vbytes,
            "usage": vbytes * 3 + 1_000_000,
            "total_fee": round(sum(int(t["fee"]) for t in self._mempool.values()) / COIN, 8),
            "maxmempool": 300_000_000,
            "mempoolminfee": MIN_RELAY_FEE_BTC_KVB,
            "minrelaytxfee": MIN_RELAY_FEE_BTC_KVB,
            "incrementalrelayfee": MIN_RELAY_FEE_BTC_KVB,
            "unbroadcastcount": 0,
            "fullrbf": True,
        }

    def _vbytes_per_second(self) -> int:
        now = self._clock()
        while self._arrivals and self._arrivals[0][0] < now - 60:
            self._arrivals.popleft()
        return int(sum(v for _, v in self._arrivals) / 60)

    def _fees(self, projection: Projection) -> dict[str, float]:
        min_fee = math.ceil(MIN_RELAY_FEE_BTC_KVB * 100_000)
        return {
            k: round(v, 3) for k, v in recommended_fees(projection.blocks, float(min_fee)).items()
        }

    def _stats(self, projection: Projection) -> dict[str, Any]:
        return {
            "mempoolInfo": self._mempool_info(),
            "vBytesPerSecond": self._vbytes_per_second(),
            "fees": self._fees(projection),
            "transactions": list(self._new_txs),
        }

    def _prices(self) -> dict[str, Any]:
        usd = round(self._usd) if self.prices_up else -1  # -1: the instance knows no price
        return {
            "time": int(self._clock()),
            "USD": usd,
            "EUR": round(usd * 0.92),
            "GBP": round(usd * 0.79),
            "CAD": round(usd * 1.37),
            "CHF": round(usd * 0.88),
            "AUD": round(usd * 1.52),
            "JPY": round(usd * 151.0),
        }

    def _last_blocks(self, n: int = 8) -> list[dict[str, Any]]:
        return [b.block for b in self._chain[-n:]]

    # ---------------------------------------------------------------- blocks

    def _block_hash(self) -> str:
        return "0" * 19 + self._hex()[19:]

    def _make_block(
        self,
        height: int,
        previous: str,
        txids: Sequence[str],
        bodies: Sequence[Mapping[str, Any]],
        *,
        timestamp: int,
        stale: bool = False,
    ) -> dict[str, Any]:
        rng = self._rng
        rates = sorted((tx_rate(t) for t in bodies), reverse=True)
        fees = sum(int(t["fee"]) for t in bodies)
        subsidy = (50 * COIN) >> (height // 210_000)
        pool_id, pool_name, pool_slug = rng.choice(_POOLS)
        size = 300 + sum(int(t["size"]) for t in bodies)
        weight = 1_200 + sum(int(t["weight"]) for t in bodies)
        recent = [int(b.block["timestamp"]) for b in self._chain[-11:]] or [timestamp]
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

    def _coinbase(self, txid: str, height: int, reward: int) -> Tx:
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
            "vout": [_output(self.random_address(), reward)],
            "size": 250,
            "weight": 1_000,
            "fee": 0,
            "status": {"confirmed": False},
        }

    def _append_block(
        self, txids: Sequence[str], bodies: Sequence[Tx], *, timestamp: int | None = None
    ) -> _Block:
        tip = self._chain[-1].block if self._chain else None
        height = int(tip["height"]) + 1 if tip else INITIAL_TIP_HEIGHT
        previous = str(tip["id"]) if tip else self._block_hash()
        now = int(self._clock()) if timestamp is None else timestamp
        if tip is not None and timestamp is None:
            now = max(now, int(tip["timestamp"]) + 1)
        coinbase_txid = self._hex()
        all_txids = [coinbase_txid, *txids]
        block = self._make_block(height, previous, all_txids, bodies, timestamp=now)
        coinbase = self._coinbase(coinbase_txid, height, int(block["extras"]["reward"]))
        entry = _Block(block, all_txids)
        self._chain.append(entry)
        self._blocks_by_hash[str(block["id"])] = entry
        status = {
            "confirmed": True,
            "block_height": height,
            "block_hash": block["id"],
            "block_time": block["timestamp"],
        }
        for txid in all_txids:
            self._tx_block[txid] = str(block["id"])
        for body in (coinbase, *bodies):
            body["status"] = dict(status)
            body.pop("position", None)
            _bounded_put(self._confirmed, str(body["txid"]), body, MAX_CONFIRMED_BODIES)
        self._trim_chain()
        return entry

    def _trim_chain(self) -> None:
        while len(self._chain) > MAX_KEPT_BLOCKS:
            del self._chain[0]
        while len(self._blocks_by_hash) > MAX_KEPT_BLOCKS + 32:
            _, old = self._blocks_by_hash.popitem(last=False)
            for txid in old.txids:
                if self._tx_block.get(txid) == old.block["id"]:
                    del self._tx_block[txid]

    def _build_history(self) -> None:
        start = int(self._clock()) - 600 * 10
        for k in range(10):
            n = self._rng.randint(500, 3_000)
            txids = [self._hex() for _ in range(n)]
            self._append_block(txids, [], timestamp=start + 600 * k)

    def _select_template(self, limit: int = BLOCK_VSIZE - 1_000) -> list[str]:
        chosen: list[str] = []
        included: set[str] = set()
        used = 0
        for tx in sorted(self._mempool.values(), key=lambda t: (-tx_rate(t), t["firstSeen"])):
            vsize = tx_vsize(tx)
            if used + vsize > limit:
                if limit - used < 200:
                    break
                continue
            parents = {i["txid"] for i in tx["vin"] if i["txid"] in self._mempool}
            if not parents <= included:
                continue
            chosen.append(str(tx["txid"]))
            included.add(str(tx["txid"]))
            used += vsize
        return chosen

    async def mine(
        self, txids: Sequence[str] | None = None, *, stale: bool = False
    ) -> dict[str, Any]:
        """Mine a block and send ONE frame: ``block`` + ``mempool-transactions`` (``mined``).

        ``txids`` default to the best fee-rate mempool txs up to ~1 MvB; unknown txids are
        mined as never-seen txs, and txs built with ``make_tx`` but never added are mined with
        their bodies (knocking out conflicting mempool txs, reported in ``replaced``).
        Pending scripted changes are flushed first. ``stale=True`` sends a stale sibling of
        the tip (``"stale": true``) that changes nothing: no sequence, no ``mined``.
        """
        await self.flush()
        if stale:
            return self._mine_stale(txids or [])
        selected = list(txids) if txids is not None else self._select_template()
        bodies: list[Tx] = []
        conflicts: list[tuple[str, Tx]] = []
        for txid in dict.fromkeys(selected):
            body = self._take(txid)
            if body is None and txid in self._built:
                body = copy_tx(self._built[txid])
                for i in body["vin"]:
                    other = self._spent_by.get((i["txid"], int(i["vout"])))
                    if other is not None:
                        conflicts.append((other, body))
            if body is not None:
                bodies.append(body)
        entry = self._append_block(list(dict.fromkeys(selected)), bodies)
        for old, _ in conflicts:
            self._drop(old)  # reported in the next poll's ``removed``
        self._usd *= math.exp(self._rng.gauss(0, 0.002))
        sequence = self._next_sequence()
        projection = self._refresh_projection()
        delta = {
            "sequence": sequence,
            "added": [],
            "removed": [],
            "mined": list(entry.txids),
            "replaced": [{"replaced": old, "by": body} for old, body in conflicts],
        }
        self._broadcast(delta, projection, block=entry.block, full_lists=True)
        return copy_block(entry.block)

    def _mine_stale(self, txids: Sequence[str]) -> dict[str, Any]:
        tip = self._chain[-1].block
        parent = self._chain[-2].block
        bodies = [self._mempool[t] for t in txids if t in self._mempool]
        block = self._make_block(
            int(tip["height"]),
            str(parent["id"]),
            [self._hex(), *txids],
            bodies,
            timestamp=int(self._clock()),
            stale=True,
        )
        self._blocks_by_hash[str(block["id"])] = _Block(block, [])
        for client in list(self._clients):
            if "blocks" in client.wants:
                self._send(client, {"block": block})
        return copy_block(block)

    async def reorg(self, depth: int = 1) -> list[dict[str, Any]]:
        """Replace the last ``depth`` blocks with new hashes at the same heights.

        Sends ``blocks`` (the new chain's last max(8, depth) blocks, up to 32) to clients that
        want blocks. The old blocks become stale (still answerable by hash); their txs go back
        to the mempool and appear in the next poll's ``added``. The new blocks hold only a
        coinbase. Returns the new blocks.
        """
        if not 1 <= depth < len(self._chain):
            raise ValueError(f"reorg depth must be 1..{len(self._chain) - 1}")
        dropped = self._chain[-depth:]
        del self._chain[-depth:]
        for old in dropped:
            old.block["stale"] = True
            for txid in old.txids:
                if self._tx_block.get(txid) == old.block["id"]:
                    del self._tx_block[txid]
                body = self._confirmed.pop(txid, None)
                if body is not None and not body["vin"][0].get("is_coinbase"):
                    body["status"] = {"confirmed": False}
                    self._insert(body)
        new = [self._append_block([], []).block for _ in dropped]
        recent = self._last_blocks(min(32, max(8, depth)))
        for client in list(self._clients):
            if "blocks" in client.wants:
                self._send(client, {"blocks": recent})
        self._refresh_projection()
        return [copy_block(b) for b in new]

    # ---------------------------------------------------------------- auto mode

    def _seed_mempool(self) -> None:
        now = self._clock()
        for n in range(INITIAL_MEMPOOL_TXS):
            tx = self.random_whale() if n % 1_000 == 500 else self.random_tx()
            tx["firstSeen"] = int(now - self._rng.uniform(0, 7_200))
            self._insert(tx)
        self._pending_added.clear()
        self._pending_removed.clear()
        self._pending_replaced.clear()
        self._arrivals.clear()
        self._refresh_projection()

    async def _auto_loop(self) -> None:
        loop = asyncio.get_running_loop()
        rng = self._rng
        next_block = loop.time() + rng.expovariate(1 / self.block_interval)
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self._auto_step(loop.time() >= next_block)
            except Exception:
                log.exception("simulator auto step failed")
            if loop.time() >= next_block:
                next_block = loop.time() + rng.expovariate(1 / self.block_interval)

    async def _auto_step(self, block_due: bool) -> None:
        rng = self._rng
        dt = self.poll_interval
        for _ in range(poisson(rng, self.tx_rate * dt)):
            self.add(self.random_tx())
        for _ in range(poisson(rng, self.whale_rate * dt)):
            whale = self.random_whale()
            self.add(whale)
            self._whales.append(str(whale["txid"]))
        if rng.random() < 1 - math.exp(-0.03 * dt):
            self._auto_rbf()
        if rng.random() < 1 - math.exp(-0.05 * dt) and self._mempool:
            cheapest = min(rng.sample(list(self._mempool), min(20, len(self._mempool))))
            self.remove(cheapest)
        await self.flush()
        if block_due:
            # Miners fill blocks to ~1 MvB, as the projection assumes. The rest of the network
            # then tops the backlog up again (at most MAX_REFILL txs per block), so the mempool
            # stays busy and the projected blocks stay meaningful.
            backlog = self._backlog_vsize()
            await self.mine(self._select_template())
            vsize, added = self._backlog_vsize(), 0
            while vsize < backlog and added < MAX_REFILL:
                tx = self.random_tx()
                self.add(tx)
                vsize += tx_vsize(tx)
                added += 1

    def _backlog_vsize(self) -> float:
        return sum(tx_vsize(tx) for tx in self._mempool.values())

    def _auto_rbf(self) -> None:
        pending = [t for t in self._whales if t in self._mempool]
        if not pending:
            return
        old = self._mempool[self._rng.choice(pending)]
        fee_rate = tx_rate(old) * 1.5 + 1
        extra = round(fee_rate * tx_vsize(old)) - int(old["fee"])
        outputs = [(o.get("scriptpubkey_address", ""), int(o["value"])) for o in old["vout"]]
        address, value = outputs[-1]
        outputs[-1] = (address, max(546, value - extra))
        new = self.make_tx(
            outputs=outputs,
            spends=[(i["txid"], int(i["vout"])) for i in old["vin"]],
            fee_rate=fee_rate,
            vsize=tx_vsize(old),
        )
        self.replace(str(old["txid"]), new)
        self._whales.append(str(new["txid"]))

    # ---------------------------------------------------------------- WebSocket

    async def _handle(self, ws: ServerConnection) -> None:
        client = _Client(ws)
        self._clients.add(client)
        self.connection_count += 1
        self._notify()
        writer = asyncio.create_task(self._writer(client))
        try:
            self._send(client, {"conversions": self._prices()})
            await self._reader(client)
        finally:
            self._clients.discard(client)
            client.dead = True
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            client.done.set()
            self._notify()

    async def _writer(self, client: _Client) -> None:
        with contextlib.suppress(ConnectionClosed):
            while not client.dead:
                text = await client.queue.get()
                if not text:
                    continue
                client.buffered -= len(text)
                await client.ws.send(text)

    async def _reader(self, client: _Client) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ConnectionClosed):
            async for raw in client.ws:
                now = loop.time()
                times = client.message_times
                times.append(now)
                while times and times[0] < now - CLIENT_MESSAGE_WINDOW:
                    times.popleft()
                if len(times) > MAX_CLIENT_MESSAGES:
                    await client.ws.close(1008, "too many messages")
                    return
                try:
                    message = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    await client.ws.close(1008, "invalid JSON")
                    return
                if not isinstance(message, dict):
                    continue
                _log_append(self.client_messages, message)
                self._notify()
                if not await self._on_message(client, message):
                    return

    async def _on_message(self, client: _Client, message: Mapping[str, Any]) -> bool:
        """Apply one client message; False when the connection was closed for it."""
        action = message.get("action")
        if action == "ping":
            self._send(client, {"pong": True})
        elif action == "want" and isinstance(message.get("data"), list):
            wanted = {str(v) for v in message["data"]} & _WANT_VALUES
            fresh = wanted - client.wants
            client.wants = wanted
            reply: dict[str, Any] = {}
            projection = self._current_projection()
            if "blocks" in fresh:
                reply["blocks"] = self._last_blocks()
            if "stats" in fresh:
                reply.update(self._stats(projection))
            if "mempool-blocks" in fresh:
                reply["mempool-blocks"] = projection.blocks
            if reply:
                self._send(client, reply)
        elif action == "init":
            projection = self._current_projection()
            self._send(
                client,
                {
                    **self._stats(projection),
                    "blocks": self._last_blocks(),
                    "mempool-blocks": projection.blocks,
                    "conversions": self._prices(),
                },
            )
        if "track-mempool" in message:
            client.track_mempool = message["track-mempool"] is True
        if "track-mempool-txids" in message:
            client.track_txids = message["track-mempool-txids"] is True
        if "track-mempool-block" in message:
            index = message["track-mempool-block"]
            if isinstance(index, int) and 0 <= index < PROJECTED_BLOCKS:
                client.block_index = index
                client.block_list = {}
                update = self._block_update(client, self._current_projection(), full=True)
                if update is not None:
                    self._send(client, {"projected-block-transactions": update})
            elif index == -1:
                client.block_index = None
                client.block_list = {}
        tracked = message.get("track-txs")
        if isinstance(tracked, list) and len(tracked) > MAX_TRACKED_TXS:
            await client.ws.close(1008, "too many txids")
            return False
        return True

    # ---------------------------------------------------------------- REST

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if "websocket" in request.headers.get("Upgrade", "").lower():
            return None
        parts = urlsplit(request.path)
        _log_append(self.rest_requests, parts.path)
        self._notify()
        if self.rest_429 > 0:
            self.rest_429 -= 1
            return _text(429, "Too Many Requests")
        try:
            return self._route(parts.path, parse_qs(parts.query))
        except Exception:
            log.exception("simulator REST %s failed", request.path)
            return _text(500, "Internal Server Error")

    def _route(self, path: str, query: Mapping[str, list[str]]) -> Response:
        segments = [s for s in path.split("/") if s]
        if segments[:1] != ["api"]:
            return _text(404, "Not Found")
        rest = segments[1:]
        v1 = rest[:1] == ["v1"]
        if v1:
            rest = rest[1:]
        projection = self._current_projection()
        if v1 and rest == ["fees", "recommended"]:
            if not self._in_sync:
                return _text(503, "Service Unavailable")
            fees = recommended_fees(projection.blocks, 1.0)
            return _json({k: math.ceil(v - 1e-9) for k, v in fees.items()})
        if v1 and rest == ["fees", "precise"]:
            return _json(self._fees(projection))
        if v1 and rest == ["fees", "mempool-blocks"]:
            return _json(projection.blocks)
        if v1 and rest == ["prices"]:
            if not self.prices_up:
                return _text(503, "Service Unavailable")
            return _json(self._prices())
        if v1 and rest == ["blocks"]:
            return _json(list(reversed(self._last_blocks(15))))
        if not v1 and rest == ["mempool"]:
            return _json(
                {
                    "count": len(self._mempool),
                    "vsize": sum(tx_vsize(t) for t in self._mempool.values()),
                    "total_fee": sum(int(t["fee"]) for t in self._mempool.values()),
                    "fee_histogram": fee_histogram(self._mempool.values()),
                }
            )
        if rest == ["mempool", "txids"]:
            return _json(list(self._mempool))
        if not v1 and rest[:3] == ["mempool", "txids", "page"] and len(rest) <= 4:
            ordered = sorted(self._mempool)
            if len(rest) == 4:
                ordered = [t for t in ordered if t > rest[3]]
            limit = int(query.get("max_txs", ["10000"])[0])
            return _json(ordered[: max(1, min(limit, 10_000))])
        if not v1 and rest == ["mempool", "recent"]:
            return _json(list(reversed(self._recent)))
        if not v1 and rest[:2] == ["blocks", "tip"] and len(rest) == 3:
            tip = self._chain[-1].block
            if rest[2] == "height":
                return _text(200, str(tip["height"]))
            if rest[2] == "hash":
                return _text(200, str(tip["id"]))
        if v1 and rest[:1] == ["tx"] and rest[2:] == ["rbf"]:
            return _json(self._rbf(rest[1]))
        if rest[:1] == ["tx"] and len(rest) in (2, 3):
            return self._tx_route(rest[1], rest[2:], extras=v1)
        if rest[:1] == ["block"] and len(rest) in (2, 3):
            entry = self._blocks_by_hash.get(rest[1])
            if entry is None:
                return _text(404, "Block not found")
            if rest[2:] == ["txids"]:
                return _json(entry.txids)
            if len(rest) == 2:
                block = entry.block
                return _json(block if v1 else {k: v for k, v in block.items() if k != "extras"})
        return _text(404, "Not Found")

    def _rbf(self, txid: str) -> dict[str, Any]:
        """`/api/v1/tx/:txid/rbf`: the replacement tree from the newest replacement down."""
        tip = txid
        while tip in self._replaced_by:
            tip = self._replaced_by[tip]
        replaces = [old for old, new in self._replaced_by.items() if new == txid]

        def tree(node: str) -> dict[str, Any]:
            children = [old for old, new in self._replaced_by.items() if new == node]
            body = self._mempool.get(node) or self._confirmed.get(node) or {}
            return {
                "tx": {"txid": node, "fee": body.get("fee"), "vsize": body.get("vsize"),
                       "rate": round(tx_rate(body), 2) if body else None,
                       "rbf": True, "fullRbf": False, "mined": node in self._tx_block},
                "time": body.get("firstSeen"), "fullRbf": False,
                "replaces": [tree(child) for child in children],
            }  # fmt: skip

        return {
            "replacements": tree(tip) if tip != txid or replaces else None,
            "replaces": replaces or None,
        }

    def _tx_route(self, txid: str, tail: Sequence[str], *, extras: bool) -> Response:
        tx = self._mempool.get(txid) or self._confirmed.get(txid)
        block_hash = self._tx_block.get(txid)
        if tail == ["status"]:
            if txid in self._mempool:
                return _json({"confirmed": False})
            entry = self._blocks_by_hash.get(block_hash) if block_hash else None
            if entry is None:
                return _text(404, "Transaction not found")
            block = entry.block
            return _json(
                {
                    "confirmed": True,
                    "block_height": block["height"],
                    "block_hash": block["id"],
                    "block_time": block["timestamp"],
                }
            )
        if tail or tx is None:
            return _text(404, "Transaction not found")
        if extras:
            return _json(tx)
        return _json({k: tx[k] for k in _ESPLORA_KEYS if k in tx})


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


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


def _prevout(address: str, value: int) -> dict[str, Any]:
    return {
        "scriptpubkey_type": script_type(address),
        "scriptpubkey_address": address,
        "value": value,
    }


def _output(address: str, value: int) -> dict[str, Any]:
    if not address:
        return {"scriptpubkey_type": "op_return", "value": value}
    return _prevout(address, value)


def _split(
    rng: random.Random, total: int, n: int, address: Callable[[], str]
) -> list[tuple[str, int]]:
    """Split ``total`` sats into n random positive parts, each from a fresh address."""
    if n <= 1:
        return [(address(), total)]
    cuts = sorted(rng.randint(1, max(1, total - 1)) for _ in range(n - 1))
    bounds = [0, *cuts, total]
    return [(address(), max(1, b - a)) for a, b in itertools.pairwise(bounds)]


def _bounded_put(store: OrderedDict[Any, Any], key: Any, value: Any, limit: int) -> None:
    store[key] = value
    store.move_to_end(key)
    while len(store) > limit:
        store.popitem(last=False)


def _log_append(entries: list[Any], item: Any) -> None:
    entries.append(item)
    if len(entries) > 2 * MAX_LOG_ENTRIES:
        del entries[:-MAX_LOG_ENTRIES]


def _response(status: int, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
        ]
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


def _text(status: int, text: str) -> Response:
    return _response(status, text.encode(), "text/plain; charset=utf-8")


def _json(value: Any) -> Response:
    return _response(200, orjson.dumps(value), "application/json")


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m exporter.sim",
        description="Run a simulated mempool.space backend (WebSocket + REST on one port).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8999)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tx-rate", type=float, default=4.0, help="ordinary txs per second")
    parser.add_argument("--whale-rate", type=float, default=0.2, help="whales per second")
    parser.add_argument("--block-interval", type=float, default=30.0, help="mean seconds")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="seconds")
    parser.add_argument(
        "--no-exchanges", action="store_true", help="do not route whales via demo exchanges"
    )
    return parser.parse_args(argv)


async def _run(args: argparse.Namespace) -> None:
    sim = SimulatedMempool(
        seed=args.seed,
        tx_rate=args.tx_rate,
        whale_rate=args.whale_rate,
        block_interval=args.block_interval,
        poll_interval=args.poll_interval,
        exchange_addresses=None if args.no_exchanges else DEMO_EXCHANGE_ADDRESSES,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await sim.start(args.host, args.port)
    print(f"simulated mempool.space at http://{args.host}:{sim.port} (ws: /api/v1/ws)", flush=True)
    try:
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the simulator until SIGINT/SIGTERM."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(_run(_parse_args(argv)))
