"""A Sans-I/O model of a mempool.space backend: mempool, sequence, projection, blocks.

No sockets, no clock, no event loop: every method that needs the time takes ``now``, randomness
comes from the model's seeded ``random.Random``, and each change that clients would hear about
returns a `Broadcast` for the socket shell (`exporter.sim.server`) to send.
"""

from __future__ import annotations

import bisect
import functools
import math
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from exporter.sim.builder import TxBuilder
from exporter.sim.bulk import BulkTail
from exporter.sim.chain import MAX_CONFIRMED_BODIES, Chain
from exporter.sim.txmath import (
    BLOCK_VSIZE,
    FLAG_REPLACEMENT,
    Projection,
    Tx,
    copy_tx,
    esplora_form,
    mempool_info,
    project,
    select_template,
    socket_fees,
    stripped,
    tx_flags,
    tx_rate,
    tx_vsize,
)

MAX_MEMPOOL_TXS = 50_000


@dataclass(eq=False)
class Broadcast:
    """One event for the clients; each client gets the parts it subscribed to.

    ``delta`` is the ``mempool-transactions`` body; ``block`` a new (or stale) block; ``blocks``
    the chain re-sent after a reorg; ``stats`` builds the ``want: stats`` messages on demand.
    Parts are serialised once per broadcast (`part`), not once per client.
    """

    delta: dict[str, Any] | None = None
    projection: Projection | None = None
    block: Mapping[str, Any] | None = None
    blocks: list[dict[str, Any]] | None = None
    stats: Callable[[], dict[str, Any]] | None = None
    full_lists: bool = False
    _parts: dict[str, bytes] = field(default_factory=dict)
    _stats_parts: list[tuple[str, bytes]] | None = None

    def stats_parts(self) -> list[tuple[str, bytes]]:
        """The ``stats`` messages as frame parts, made at most once per broadcast."""
        if self._stats_parts is None:
            made = self.stats() if self.stats is not None else {}
            self._stats_parts = [(k, orjson.dumps(v)) for k, v in made.items()]
        return self._stats_parts

    def part(self, key: str, make: Callable[[], Any]) -> bytes:
        """``make()`` as JSON, made at most once per broadcast."""
        if key not in self._parts:
            self._parts[key] = orjson.dumps(make())
        return self._parts[key]


class MempoolModel:
    """The backend's state: scripted changes accumulate and go out in the next `poll`."""

    def __init__(
        self,
        *,
        now: float,
        seed: int = 1,
        exchange_addresses: Mapping[str, str] | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.usd = 95_000.0 + self.rng.uniform(-5_000, 5_000)
        self.prices_up = True
        self.in_sync = True
        self.sequence = 0
        self.chain = Chain(self.rng)
        self.builder = TxBuilder(self.rng, self.lookup, exchange_addresses)
        self.txs: dict[str, Tx] = {}
        self.spent_by: dict[tuple[str, int], str] = {}
        self.replaced_by: dict[str, str] = {}  # old txid -> its replacement, for /v1/tx/:txid/rbf
        self._pending_added: dict[str, Tx] = {}
        self._pending_removed: dict[str, None] = {}
        self._pending_replaced: list[tuple[str, str]] = []
        self.recent: deque[dict[str, Any]] = deque(maxlen=10)
        self._new_txs: deque[dict[str, Any]] = deque(maxlen=6)
        self._arrivals: deque[tuple[float, int]] = deque()
        self._projection: Projection | None = None
        self._sorted: list[str] | None = None
        self.tail: BulkTail | None = None
        self.stream_prevouts = True
        self.chain.build_history(now, self.builder.random_address)

    def lookup(self, txid: str) -> Tx | None:
        """A mempool or recently confirmed tx body (the model's own, do not mutate)."""
        found = self.txs.get(txid) or self.chain.confirmed.get(txid)
        if found is None and self.tail is not None:
            found = self.tail.get(txid)
        return found

    def in_mempool(self, txid: str) -> bool:
        """Whether the mempool (tail included) holds ``txid``."""
        return txid in self.txs or (self.tail is not None and txid in self.tail)

    def fill_tail(self, count: int, now: float, *, whale_every: int = 0) -> None:
        """Put ``count`` unannounced low-fee txs (1-2 sat/vB) in the mempool (see `BulkTail`)."""
        self.tail = BulkTail(count, seed=self.rng.getrandbits(32), now=now, whale_every=whale_every)

    def all_txids(self) -> list[str]:
        """Every txid in the mempool, tail included (``/api/mempool/txids``)."""
        tail = self.tail.txids() if self.tail is not None else ()
        return [*self.txs, *tail]

    def txids_after(self, last: str | None, limit: int) -> list[str]:
        """Up to ``limit`` mempool txids in txid order, strictly after ``last``."""
        return [txid for txid, _ in self._page(last, limit)]

    def esplora_page(self, last: str | None, limit: int) -> list[Tx]:
        """Up to ``limit`` mempool txs in txid order after ``last``, in esplora's shape."""
        tail = self.tail
        return [
            esplora_form(self.txs[txid]) if i < 0 or tail is None else tail.tx(i, extras=False)
            for txid, i in self._page(last, limit)
        ]

    def _page(self, last: str | None, limit: int) -> list[tuple[str, int]]:
        """(txid, tail index or -1) pairs in txid order after ``last``."""
        if self._sorted is None:
            self._sorted = sorted(self.txs)
        start = 0 if last is None else bisect.bisect_right(self._sorted, last)
        page = [(txid, -1) for txid in self._sorted[start : start + limit]]
        if self.tail is not None:
            page = sorted([*page, *self.tail.after(last, limit)])[:limit]
        return page

    def totals(self) -> tuple[int, int, int]:
        """Count, vsize and fees of the whole mempool, tail included."""
        tail = self.tail
        vsize = sum(tx_vsize(t) for t in self.txs.values()) + (tail.vsize if tail else 0)
        fees = sum(int(t["fee"]) for t in self.txs.values()) + (tail.fees if tail else 0)
        return len(self.txs) + (len(tail) if tail else 0), vsize, fees

    # ---------------------------------------------------------------- scripted changes

    def add(self, tx: Mapping[str, Any], now: float) -> None:
        """Enter a tx; one spending a mempool tx's outpoint replaces it (n conflicts, n pairs)."""
        new: Tx = copy_tx(dict(tx))
        txid = str(new["txid"])
        if txid in self.txs:
            return
        conflicts = list(
            dict.fromkeys(
                other
                for i in new["vin"]
                if (other := self.spent_by.get((i["txid"], int(i["vout"])))) is not None
            )
        )
        for old in conflicts:
            self._drop(old)
            self._pending_replaced.append((old, txid))
            self._link(old, txid)
        if conflicts:
            new["flags"] = int(new.get("flags") or tx_flags(new)) | FLAG_REPLACEMENT
        self._insert(new, now)

    def add_silently(self, tx: Mapping[str, Any], now: float) -> None:
        """Enter a tx that no poll will announce, as if clients had missed the message.

        The projected blocks include it from now on, as the backend's would after its next
        mempool update (only the message is missed)."""
        self.add(tx, now)
        self._pending_added.pop(str(tx["txid"]), None)
        self._projection = None

    def replace(self, old_txid: str, new_tx: Mapping[str, Any], now: float) -> None:
        """RBF: next poll has old in ``removed``, new in ``added`` and the pair in ``replaced``."""
        self._drop(old_txid)
        new: Tx = copy_tx(dict(new_tx))
        new["flags"] = int(new.get("flags") or tx_flags(new)) | FLAG_REPLACEMENT
        self.add(new, now)
        pair = (old_txid, str(new["txid"]))
        if pair not in self._pending_replaced:
            self._pending_replaced.append(pair)
        self._link(old_txid, pair[1])

    def _link(self, old: str, new: str) -> None:
        self.replaced_by[old] = new
        while len(self.replaced_by) > MAX_CONFIRMED_BODIES:
            del self.replaced_by[next(iter(self.replaced_by))]

    def remove(self, txid: str) -> None:
        """Evict/expire a tx (and its descendants): they show in the next poll's ``removed``."""
        if self.tail is not None and self.tail.take(txid) is not None:
            self._pending_removed[txid] = None
        self._drop(txid)

    def _insert(self, tx: Tx, now: float) -> None:
        txid = str(tx["txid"])
        tx["status"] = {"confirmed": False}
        self.txs[txid] = tx
        self._sorted = None
        for i in tx["vin"]:
            self.spent_by[(i["txid"], int(i["vout"]))] = txid
        if txid in self._pending_removed:
            del self._pending_removed[txid]  # clients still hold it
        else:
            self._pending_added[txid] = tx
        short = stripped(tx)
        self.recent.append({k: short[k] for k in ("txid", "fee", "vsize", "value")})
        self._new_txs.append(short)
        self._arrivals.append((now, tx_vsize(tx)))
        if len(self.txs) > MAX_MEMPOOL_TXS:
            lowest = min(self.txs.values(), key=tx_rate)
            self._drop(str(lowest["txid"]))

    def _take(self, txid: str) -> Tx | None:
        """Remove one tx from the mempool and its indexes, reporting nothing."""
        tx = self.txs.pop(txid, None)
        if tx is None:
            return None
        self._sorted = None
        for i in tx["vin"]:
            op = (i["txid"], int(i["vout"]))
            if self.spent_by.get(op) == txid:
                del self.spent_by[op]
        return tx

    def _drop(self, txid: str) -> None:
        """Remove a tx and its descendants as evicted/replaced/conflicted (``removed``)."""
        tx = self.txs.get(txid)
        if tx is None:
            return
        for n in range(len(tx["vout"])):
            child = self.spent_by.get((txid, n))
            if child is not None and child != txid:
                self._drop(child)
        self._take(txid)
        if self._pending_added.pop(txid, None) is None:
            self._pending_removed[txid] = None

    def forget_pending(self) -> None:
        """Drop every unsent change (the backlog a fresh instance starts with)."""
        self._pending_added.clear()
        self._pending_removed.clear()
        self._pending_replaced.clear()
        self._arrivals.clear()

    def skip_sequence(self, n: int = 1) -> None:
        """Lose n messages: the counter advances without sending, so clients see a jump."""
        self.sequence += n

    def _next_sequence(self) -> int:
        if self.in_sync:
            self.sequence += 1
        return self.sequence

    # ---------------------------------------------------------------- projection and stats

    def refresh_projection(self) -> Projection:
        """Re-project the mempool and update each tx's ``position`` and ``flags``."""
        projection = project(self.txs.values())
        for txid, tx in self.txs.items():
            block, offset = projection.positions[txid]
            tx["position"] = {"block": block, "vsize": offset}
            if txid in projection.listed:
                tx["flags"] = int(tx.get("flags") or tx_flags(tx))
            else:
                tx.pop("flags", None)
        self._projection = projection
        return projection

    def projection(self) -> Projection:
        """The projection as of the last poll (made now if there was none)."""
        return self._projection or self.refresh_projection()

    def vbytes_per_second(self, now: float) -> int:
        """Arrivals over the last minute, in vB/s."""
        while self._arrivals and self._arrivals[0][0] < now - 60:
            self._arrivals.popleft()
        return int(sum(v for _, v in self._arrivals) / 60)

    def stats(self, projection: Projection, now: float) -> dict[str, Any]:
        """The ``want: stats`` messages."""
        return {
            "mempoolInfo": mempool_info(self.totals()),
            "vBytesPerSecond": self.vbytes_per_second(now),
            "fees": socket_fees(projection),
            "transactions": list(self._new_txs),
        }

    # ---------------------------------------------------------------- events

    def poll(self, now: float) -> Broadcast | None:
        """The pending mempool delta as one broadcast, or None when nothing changed."""
        if not (self._pending_added or self._pending_removed or self._pending_replaced):
            return None
        sequence = self._next_sequence()
        projection = self.refresh_projection()
        added = [self.streamed(t) for t in self._pending_added.values()]
        by_txid = {str(t["txid"]): t for t in added}
        replaced = [
            {"replaced": old, "by": by_txid.get(new) or self.streamed(self.txs[new])}
            for old, new in self._pending_replaced
            if new in by_txid or new in self.txs
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
        return Broadcast(delta, projection, stats=functools.partial(self.stats, projection, now))

    def select_template(self, limit: int = BLOCK_VSIZE - 1_000) -> list[str]:
        """A miner's choice: best fee rates first, parents before children, up to ``limit`` vB."""
        return select_template(self.txs, limit)

    def streamed(self, tx: Tx) -> Tx:
        """A tx as the stream carries it: without prevouts when the instance has none."""
        if self.stream_prevouts:
            return tx
        return {**tx, "vin": [{**i, "prevout": None} for i in tx["vin"]]}

    def mine(
        self, txids: Sequence[str] | None, now: float, unseen: Sequence[Mapping[str, Any]] = ()
    ) -> tuple[dict[str, Any], Broadcast]:
        """Mine a block: ONE broadcast with ``block`` and the delta's ``mined`` (poll first).

        ``txids`` default to `select_template`; unknown txids are mined as never-seen txs, and
        txs built but never added (or given in ``unseen``, mined after ``txids``) with their
        bodies, knocking out conflicting mempool txs (reported in ``replaced`` and in a later
        poll's ``removed``).
        """
        chosen = txids if txids is not None else self.select_template()
        extra = {str(t["txid"]): copy_tx(t) for t in unseen}
        selected = list(dict.fromkeys([*chosen, *extra]))
        bodies: list[Tx] = []
        conflicts: list[tuple[str, Tx]] = []
        for txid in selected:
            body = self._take(txid)
            if body is None and self.tail is not None:
                body = self.tail.take(txid)
            built = None if body else extra.get(txid) or self.builder.built(txid)
            if built is not None:
                body = built
                for i in built["vin"]:
                    other = self.spent_by.get((i["txid"], int(i["vout"])))
                    if other is not None:
                        conflicts.append((other, built))
            if body is not None:
                bodies.append(body)
        entry = self.chain.append(
            selected, bodies, now=int(now), payout=self.builder.random_address()
        )
        for old, _ in conflicts:
            self._drop(old)
        self.usd *= math.exp(self.rng.gauss(0, 0.002))
        sequence = self._next_sequence()
        projection = self.refresh_projection()
        delta = {
            "sequence": sequence,
            "added": [],
            "removed": [],
            "mined": list(entry.txids),
            "replaced": [{"replaced": old, "by": self.streamed(body)} for old, body in conflicts],
        }
        stats = functools.partial(self.stats, projection, now)
        event = Broadcast(delta, projection, block=entry.block, stats=stats, full_lists=True)
        return entry.block, event

    def mine_stale(self, txids: Sequence[str], now: float) -> tuple[dict[str, Any], Broadcast]:
        """A stale sibling of the tip (``"stale": true``): no sequence, no ``mined``."""
        bodies = [self.txs[t] for t in txids if t in self.txs]
        block = self.chain.stale_sibling(txids, bodies, int(now))
        return block, Broadcast(block=block)

    def reorg(self, depth: int, now: float) -> tuple[list[dict[str, Any]], Broadcast]:
        """Replace the last ``depth`` blocks with new empty ones at the same heights.

        Clients that want blocks get ``blocks`` (the last max(8, depth), up to 32); the old
        blocks' txs return to the mempool and appear in the next poll's ``added``.
        """
        for body in self.chain.disconnect(depth):
            self._insert(body, now)
        new = [
            self.chain.append([], [], now=int(now), payout=self.builder.random_address()).block
            for _ in range(depth)
        ]
        self.refresh_projection()
        return new, Broadcast(blocks=self.chain.last(min(32, max(8, depth))))
