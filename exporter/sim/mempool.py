"""A simulated mempool.space backend: WebSocket and REST on one loopback port.

It follows shared/MEMPOOL_PROTOCOL.md (the real backend). Tests script it (``add``,
``replace``, ``remove``, ``flush``, ``mine``, ``reorg``) and inject faults (lost messages,
out-of-sync sequence, dropped sockets, HTTP 429, prices down); in auto mode a background task
plays a live mempool with Poisson arrivals, whales, RBF and blocks.

`SimulatedMempool` is the facade tests use. The parts: `exporter.sim.model` (the Sans-I/O
state), `exporter.sim.session` (one client's subscriptions), `exporter.sim.rest` (REST
answers), `exporter.sim.server` (the sockets), `exporter.sim.auto` (the automatic mode),
`exporter.sim.builder` and `exporter.sim.txmath` (transactions and fee maths).

Run it standalone with ``python -m exporter.sim --port 8999``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal

from exporter.sim import auto as auto_mode
from exporter.sim.builder import DEMO_EXCHANGE_ADDRESSES
from exporter.sim.model import MempoolModel
from exporter.sim.server import Fault, MempoolServer
from exporter.sim.txmath import (
    COIN,
    Projection,
    copy_block,
    fee_histogram,
    project,
    recommended_fees,
    stripped,
    tx_flags,
    tx_rate,
    tx_value,
    tx_vsize,
)

__all__ = [
    "COIN",
    "DEMO_EXCHANGE_ADDRESSES",
    "Projection",
    "SimulatedMempool",
    "fee_histogram",
    "project",
    "recommended_fees",
    "stripped",
    "tx_flags",
    "tx_rate",
    "tx_value",
    "tx_vsize",
]


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
        backend: Literal["public", "bare"] = "public",
        stream_prevouts: bool = True,
        esplora: bool = False,
    ) -> None:
        self._clock = clock
        self.esplora = esplora
        self.auto = auto
        self.block_interval = block_interval
        self.poll_interval = poll_interval
        self.model = MempoolModel(now=clock(), seed=seed, exchange_addresses=exchange_addresses)
        self.model.prices_up = prices_up
        self.model.stream_prevouts = stream_prevouts
        self.server = MempoolServer(self.model, clock)
        self.server.bare = backend == "bare"
        self.traffic = auto_mode.AutoTraffic(self.model, tx_rate=tx_rate, whale_rate=whale_rate)
        self._auto_task: asyncio.Task[None] | None = None
        if auto:
            auto_mode.seed_mempool(self.model, clock())

    # ---------------------------------------------------------------- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on host:port (0 picks a free port) and start the auto loop if enabled."""
        await self.server.start(host, port)
        if self.esplora:
            await self.server.start_electrs(host)
        if self.auto:
            self._auto_task = asyncio.create_task(
                auto_mode.run(
                    self.traffic,
                    self.server.broadcast,
                    self._clock,
                    poll_interval=lambda: self.poll_interval,
                    block_interval=lambda: self.block_interval,
                ),
                name="simulator-auto",
            )

    async def stop(self) -> None:
        """Stop the auto loop, close every socket and the listener; safe to call twice."""
        task, self._auto_task = self._auto_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.server.stop()

    async def __aenter__(self) -> SimulatedMempool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The bound TCP port (after ``start``)."""
        return self.server.port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``; the socket is at ``/api/v1/ws``."""
        return self.server.url

    @property
    def esplora_url(self) -> str:
        """The electrs REST base (``esplora=True``), e.g. ``http://127.0.0.1:40124``."""
        if self.server.electrs is None:
            raise RuntimeError("start a SimulatedMempool(esplora=True) first")
        return self.server.electrs.url

    # ---------------------------------------------------------------- introspection and knobs

    @property
    def mempool(self) -> Mapping[str, dict[str, Any]]:
        """The current mempool (scripted changes included before they are flushed)."""
        return MappingProxyType(self.model.txs)

    @property
    def tip_height(self) -> int:
        """Height of the best block."""
        return int(self.model.chain.tip["height"])

    @property
    def sequence(self) -> int:
        """The last ``mempool-transactions`` sequence number used."""
        return self.model.sequence

    @property
    def blocks(self) -> list[dict[str, Any]]:
        """The chain's kept blocks, oldest first."""
        return [b.block for b in self.model.chain.blocks]

    @property
    def connections(self) -> int:
        """WebSocket clients currently connected."""
        return self.server.connections

    @property
    def connection_count(self) -> int:
        """WebSocket connections accepted so far."""
        return self.server.connection_count

    @property
    def client_messages(self) -> list[dict[str, Any]]:
        """Every JSON object clients sent, oldest first."""
        return self.server.client_messages

    @property
    def rest_requests(self) -> list[str]:
        """The path of every REST request, oldest first."""
        return self.server.rest_requests

    @property
    def rest_429(self) -> int:
        """How many of the next REST requests answer 429."""
        return self.server.rest_429

    @rest_429.setter
    def rest_429(self, count: int) -> None:
        self.server.rest_429 = count

    @property
    def prices_up(self) -> bool:
        """False: prices answer 503 on REST and -1 on the socket."""
        return self.model.prices_up

    @prices_up.setter
    def prices_up(self, up: bool) -> None:
        self.model.prices_up = up

    @property
    def exchange_addresses(self) -> dict[str, str]:
        """Addresses whales are routed through, by entity."""
        return self.model.builder.exchange_addresses

    @property
    def tx_rate(self) -> float:
        """Ordinary txs per second in auto mode."""
        return self.traffic.tx_rate

    @property
    def whale_rate(self) -> float:
        """Whales per second in auto mode."""
        return self.traffic.whale_rate

    def rest_calls(self, route: str) -> int:
        """REST requests so far to a route such as ``/api/tx/:txid`` (see `route_key`)."""
        return self.server.rest_counts[route]

    async def wait_until(self, condition: Callable[[SimulatedMempool], bool]) -> None:
        """Wait until ``condition(self)`` holds; wrap it in ``asyncio.timeout``.

        The condition is re-checked whenever a client connects, disconnects or sends a message,
        and whenever a REST request arrives.
        """
        await self.server.wait_until(lambda: condition(self))

    # ---------------------------------------------------------------- building transactions

    def random_address(self) -> str:
        """A random mainnet-looking address (no valid checksum)."""
        return self.model.builder.random_address()

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
        """Build a tx (not added); see `exporter.sim.builder.TxBuilder.make_tx`."""
        return self.model.builder.make_tx(
            now=self._clock(), outputs=outputs, inputs=inputs, fee_rate=fee_rate,
            rbf_signal=rbf_signal, vsize=vsize, spends=spends, prevouts=prevouts, txid=txid,
        )  # fmt: skip

    def random_tx(self) -> dict[str, Any]:
        """A realistic ordinary tx: log-normal values, a fee spread, sometimes batches."""
        return self.model.builder.random_tx(self._clock())

    def random_whale(self) -> dict[str, Any]:
        """A >=100 BTC tx, sometimes to/from/between exchange addresses, sometimes with change."""
        return self.model.builder.random_whale(self._clock())

    # ---------------------------------------------------------------- scripted changes

    def add(self, tx: Mapping[str, Any]) -> None:
        """Enter a tx; one spending a mempool tx's outpoint replaces it (n conflicts, n pairs)."""
        self.model.add(tx, self._clock())

    def add_silently(self, tx: Mapping[str, Any]) -> None:
        """Enter a tx no poll announces, as if clients had missed it (e.g. during an outage)."""
        self.model.add_silently(tx, self._clock())

    def bury(
        self, vsize: int = 9_000_000, *, fee_rate: float = 5.0, silently: bool = False
    ) -> list[str]:
        """Add ``vsize`` vB of 50 kvB txs at ``fee_rate``: a tx paying less sits below every
        projected-block list (~8 MvB). Returns their txids."""
        txids = []
        for _ in range(-(-vsize // 50_000)):
            tx = self.make_tx(
                outputs=[(self.random_address(), COIN)], fee_rate=fee_rate, vsize=50_000
            )
            (self.add_silently if silently else self.add)(tx)
            txids.append(str(tx["txid"]))
        return txids

    def fill_tail(self, count: int, *, whale_every: int = 0) -> None:
        """Put ``count`` unannounced 1-2 sat/vB txs in the mempool, cheaply (700,000 in seconds);
        every ``whale_every``-th moves 100-300 BTC. Served by REST, not in ``mempool``."""
        self.model.fill_tail(count, self._clock(), whale_every=whale_every)

    def replace(self, old_txid: str, new_tx: Mapping[str, Any]) -> None:
        """RBF: next poll has old in ``removed``, new in ``added`` and the pair in ``replaced``."""
        self.model.replace(old_txid, new_tx, self._clock())

    def remove(self, txid: str) -> None:
        """Evict/expire a tx (and its descendants): they show in the next poll's ``removed``."""
        self.model.remove(txid)

    async def flush(self) -> int:
        """Send the pending mempool delta now (only if something changed); return its sequence."""
        self.server.broadcast(self.model.poll(self._clock()))
        return self.model.sequence

    async def mine(
        self,
        txids: Sequence[str] | None = None,
        *,
        stale: bool = False,
        unseen: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        """Mine a block and send ONE frame: ``block`` + ``mempool-transactions`` (``mined``).

        ``txids`` default to the best fee-rate mempool txs up to ~1 MvB; unknown txids are
        mined as never-seen txs, and txs built with ``make_tx`` but never added are mined with
        their bodies (knocking out conflicting mempool txs, reported in ``replaced``).
        Pending scripted changes are flushed first. ``stale=True`` sends a stale sibling of
        the tip (``"stale": true``) that changes nothing: no sequence, no ``mined``. ``unseen``
        txs are mined after ``txids`` without ever entering the mempool.
        """
        await self.flush()
        now = self._clock()
        if stale:
            block, event = self.model.mine_stale(txids or [], now)
        else:
            block, event = self.model.mine(txids, now, unseen)
        self.server.broadcast(event)
        return copy_block(block)

    async def reorg(self, depth: int = 1, *, announce: bool = True) -> list[dict[str, Any]]:
        """Replace the last ``depth`` blocks with new hashes at the same heights.

        Sends ``blocks`` (the new chain's last max(8, depth) blocks, up to 32) to clients that
        want blocks. The old blocks become stale (still answerable by hash); their txs go back
        to the mempool and appear in the next poll's ``added``. The new blocks hold only a
        coinbase. Returns the new blocks. ``announce=False`` sends nothing, like a backend
        without indexing: clients learn of the fork from the next block's previousblockhash.
        """
        new, event = self.model.reorg(depth, self._clock())
        if announce:
            self.server.broadcast(event)
        return [copy_block(b) for b in new]

    # ---------------------------------------------------------------- fault injection

    def skip_sequence(self, n: int = 1) -> None:
        """Lose n messages: the counter advances without sending, so clients see a jump."""
        self.model.skip_sequence(n)

    def set_in_sync(self, in_sync: bool) -> None:
        """Out of sync, messages keep flowing with the sequence repeated."""
        self.model.in_sync = in_sync

    @property
    def flapping(self) -> bool:
        """True: every WebSocket is accepted and then closed at once (1001)."""
        return self.server.flapping

    @flapping.setter
    def flapping(self, on: bool) -> None:
        self.server.flapping = on

    def fail(
        self, route: str, status: int = 500, *, retry_after: float | None = None,
        times: int | None = None, hang: bool = False,
    ) -> None:  # fmt: skip
        """Fail REST requests to ``route`` (``/api/tx/:txid`` or an exact path) with ``status``
        (and ``Retry-After``), or leave them hanging (``hang``); ``times`` None: until cleared."""
        self.server.inject(route, Fault(status, retry_after, times, hang))

    def clear_faults(self) -> None:
        """Remove every REST fault and answer hanging requests (503)."""
        self.server.clear_faults()

    async def drop_connections(self) -> None:
        """Close every client WebSocket (1001) and wait until their handlers have ended."""
        await self.server.drop_connections()
