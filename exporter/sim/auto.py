"""The simulator's automatic mode: a backlog at start, Poisson arrivals, whales, RBF, blocks.

`AutoTraffic.step` is Sans-I/O (it takes ``now`` and returns the broadcasts); `run` is the small
asyncio loop that calls it every poll interval and hands the broadcasts to the socket shell.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable

from exporter.sim.model import Broadcast, MempoolModel
from exporter.sim.txmath import poisson, tx_rate, tx_vsize

log = logging.getLogger(__name__)

INITIAL_MEMPOOL_TXS = 8_000
MAX_REFILL = 5_000


def seed_mempool(model: MempoolModel, now: float, count: int = INITIAL_MEMPOOL_TXS) -> None:
    """Fill the mempool with a backlog (one whale per thousand txs) that no client was told of."""
    builder, rng = model.builder, model.rng
    for n in range(count):
        tx = builder.random_whale(now) if n % 1_000 == 500 else builder.random_tx(now)
        tx["firstSeen"] = int(now - rng.uniform(0, 7_200))
        model.add(tx, now)
    model.forget_pending()
    model.refresh_projection()


class AutoTraffic:
    """A live mempool's traffic: ordinary txs and whales arrive, some whales get replaced."""

    def __init__(self, model: MempoolModel, *, tx_rate: float, whale_rate: float) -> None:
        self.model = model
        self.tx_rate = tx_rate
        self.whale_rate = whale_rate
        self._whales: deque[str] = deque(maxlen=100)

    def step(self, now: float, dt: float, *, block_due: bool) -> list[Broadcast]:
        """``dt`` seconds of traffic, then the poll (and a block when due)."""
        model, rng, builder = self.model, self.model.rng, self.model.builder
        for _ in range(poisson(rng, self.tx_rate * dt)):
            model.add(builder.random_tx(now), now)
        for _ in range(poisson(rng, self.whale_rate * dt)):
            whale = builder.random_whale(now)
            model.add(whale, now)
            self._whales.append(str(whale["txid"]))
        if rng.random() < 1 - math.exp(-0.03 * dt):
            self._replace_a_whale(now)
        if rng.random() < 1 - math.exp(-0.05 * dt) and model.txs:
            cheapest = min(rng.sample(list(model.txs), min(20, len(model.txs))))
            model.remove(cheapest)
        events = [model.poll(now)]
        if block_due:
            # Miners fill blocks to ~1 MvB, as the projection assumes. The rest of the network
            # then tops the backlog up again (at most MAX_REFILL txs per block), so the mempool
            # stays busy and the projected blocks stay meaningful.
            backlog = self._backlog_vsize()
            events.append(model.mine(model.select_template(), now)[1])
            vsize, added = self._backlog_vsize(), 0
            while vsize < backlog and added < MAX_REFILL:
                tx = builder.random_tx(now)
                model.add(tx, now)
                vsize += tx_vsize(tx)
                added += 1
        return [e for e in events if e is not None]

    def _backlog_vsize(self) -> float:
        return sum(tx_vsize(tx) for tx in self.model.txs.values())

    def _replace_a_whale(self, now: float) -> None:
        model = self.model
        pending = [t for t in self._whales if t in model.txs]
        if not pending:
            return
        old = model.txs[model.rng.choice(pending)]
        fee_rate = tx_rate(old) * 1.5 + 1
        extra = round(fee_rate * tx_vsize(old)) - int(old["fee"])
        outputs = [(o.get("scriptpubkey_address", ""), int(o["value"])) for o in old["vout"]]
        address, value = outputs[-1]
        outputs[-1] = (address, max(546, value - extra))
        new = model.builder.make_tx(
            now=now,
            outputs=outputs,
            spends=[(i["txid"], int(i["vout"])) for i in old["vin"]],
            fee_rate=fee_rate,
            vsize=tx_vsize(old),
        )
        model.replace(str(old["txid"]), new, now)
        self._whales.append(str(new["txid"]))


async def run(
    traffic: AutoTraffic,
    send: Callable[[Broadcast], None],
    clock: Callable[[], float],
    *,
    poll_interval: Callable[[], float],
    block_interval: Callable[[], float],
) -> None:
    """Step the traffic every poll interval until cancelled; blocks come at exponential gaps."""
    loop = asyncio.get_running_loop()
    rng = traffic.model.rng
    next_block = loop.time() + rng.expovariate(1 / block_interval())
    while True:
        dt = poll_interval()
        await asyncio.sleep(dt)
        due = loop.time() >= next_block
        try:
            for event in traffic.step(clock(), dt, block_due=due):
                send(event)
        except Exception:
            log.exception("simulator auto step failed")
        if due:
            next_block = loop.time() + rng.expovariate(1 / block_interval())
