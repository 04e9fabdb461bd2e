"""Fixtures: the simulated mempool and the real exporter, both on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from exporter import app
from exporter.config import Settings, load
from exporter.core.addresses import AddressBook
from exporter.metrics import Metrics
from exporter.shell.store import Store
from exporter.sim.mempool import SimulatedMempool

EXCHANGES = {"bc1qbinancecold0000000000000000000000000": "Binance",
             "bc1qkrakenhot00000000000000000000000000": "Kraken"}  # fmt: skip


@dataclass
class Exporter:
    """A running exporter: its settings, HTTP base URL and a way to stop it."""

    settings: Settings
    base: str
    registry: CollectorRegistry
    stop: asyncio.Event
    task: asyncio.Task[None]
    http: httpx.AsyncClient = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.AsyncClient(base_url=self.base, timeout=10)

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    async def metrics_text(self) -> str:
        response = await self.http.get("/metrics")
        assert response.status_code == 200
        return response.text

    async def scraped(self, name: str, **labels: str) -> float | None:
        """A sample read through the HTTP endpoint, as Prometheus would."""
        for family in text_string_to_metric_families(await self.metrics_text()):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return sample.value
        return None

    async def whales(self, **params: Any) -> list[dict[str, Any]]:
        response = await self.http.get("/api/v1/whales", params=params)
        assert response.status_code == 200, response.text
        return response.json()["whales"]  # type: ignore[no-any-return]

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 10)
        await self.http.aclose()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """An open store on a real DuckDB file of the test's own, closed afterwards."""
    store = Store(tmp_path / "w.duckdb")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
def metrics() -> Metrics:
    """Every series on a fresh registry of the test's own."""
    return Metrics(CollectorRegistry(), process=False)


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedMempool]:
    simulator = SimulatedMempool(seed=5, auto=False, exchange_addresses=EXCHANGES)
    await simulator.start()
    yield simulator
    await simulator.stop()


StartExporter = Callable[..., Awaitable[Exporter]]


@pytest.fixture
async def start_exporter(tmp_path: Path) -> AsyncIterator[StartExporter]:
    running: list[Exporter] = []

    async def start(
        mempool_url: str, *, environ: dict[str, str] | None = None, **overrides: Any
    ) -> Exporter:
        values: dict[str, Any] = {
            "mempool_url": mempool_url,
            "db": tmp_path / "whales.duckdb",
            "listen": "127.0.0.1:0",
            "stale_after": 5,
            "ping_interval": 1,
            "rest_timeout": 5,
        }
        values.update(overrides)
        settings = load(values, environ=environ or {})
        registry = CollectorRegistry()
        stop = asyncio.Event()
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            app.run(
                settings,
                AddressBook(EXCHANGES),
                stop=stop,
                on_ready=ready.set_result,
                backoff=lambda attempt: 0.2,
                registry=registry,
                handle_signals=False,
            )
        )
        done, _ = await asyncio.wait({task, ready}, timeout=15, return_when="FIRST_COMPLETED")
        if task in done:
            task.result()  # raises the start-up error
        port = await asyncio.wait_for(ready, 1)
        exporter = Exporter(settings, f"http://127.0.0.1:{port}", registry, stop, task)
        running.append(exporter)
        return exporter

    yield start
    for exporter in running:
        if not exporter.task.done():
            await exporter.close()
