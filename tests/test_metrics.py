"""The exporter's own series: buckets, units, counters for recording rules, exemplars, REST."""

from __future__ import annotations

import asyncio
import math
import re
import time

import httpx
import pytest
from conftest import StartExporter
from prometheus_client import CollectorRegistry
from support import make_signal, wait_for
from support import sim_whale as whale

from exporter.core.models import Signal, Status
from exporter.errors import NotFound
from exporter.metrics import MAX_REST_ENDPOINTS, Metrics, rest_endpoint
from exporter.shell.instrument import ObservedTransport, watch_loop_lag
from exporter.shell.rest import MempoolRest
from exporter.sim.mempool import SimulatedMempool

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def fresh(**kwargs: float) -> tuple[Metrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return Metrics(registry, process=False, **kwargs), registry  # type: ignore[arg-type]


def bucket_bounds(registry: CollectorRegistry, name: str) -> list[float]:
    return [
        float(sample.labels["le"])
        for family in registry.collect()
        for sample in family.samples
        if sample.name == f"{name}_bucket"
    ]


def test_value_buckets_scale_with_the_threshold() -> None:
    """The value histogram's buckets are multiples of the configured threshold."""
    _, default = fresh()
    _, big = fresh(threshold_btc=1_000)
    assert bucket_bounds(default, "whale_transaction_value_btc")[:3] == [100, 150, 250]
    assert bucket_bounds(big, "whale_transaction_value_btc")[:3] == [1_000, 1_500, 2_500]
    assert big.get_sample_value("whale_threshold_btc") == 1_000


def test_fee_rate_buckets_resolve_below_one_sat_per_vbyte() -> None:
    """Fee-rate buckets start below 1 sat/vB, where low-fee periods clear blocks."""
    _, registry = fresh()
    bounds = bucket_bounds(registry, "whale_fee_rate_sat_per_vbyte")
    assert [b for b in bounds if b < 1] == [0.1, 0.25, 0.5]


def test_build_info_carries_a_revision() -> None:
    """whale_exporter_build_info has version and a non-empty revision."""
    _, registry = fresh()
    (sample,) = [
        s
        for family in registry.collect()
        for s in family.samples
        if s.name == "whale_exporter_build_info"
    ]
    assert sample.labels["version"] and sample.labels["revision"]


def test_unknown_price_is_nan_not_zero() -> None:
    """Before any price is known, whale_price_usd is NaN."""
    _, registry = fresh()
    value = registry.get_sample_value("whale_price_usd")
    assert value is not None and math.isnan(value)


def signal(status: Status, *, predicted: int | None, blocks: int | None) -> Signal:
    height = None if blocks is None else 100 + blocks
    return make_signal("a" * 64, 150, status=status, tip_height=100, block_height=height,
                       predicted_blocks=predicted)  # fmt: skip


def test_resolutions_count_hits_and_misses() -> None:
    """A confirmation in time is a hit, a late one or a drop is a miss; untested ones neither."""
    metrics, registry = fresh()
    metrics.count_prediction(signal(Status.CONFIRMED, predicted=2, blocks=1))
    metrics.count_prediction(signal(Status.CONFIRMED, predicted=1, blocks=3))
    metrics.count_prediction(signal(Status.DROPPED, predicted=1, blocks=None))
    metrics.count_prediction(signal(Status.CONFIRMED, predicted=None, blocks=2))
    read = registry.get_sample_value
    assert read("whale_predictions_total", {"result": "hit"}) == 1
    assert read("whale_predictions_total", {"result": "miss"}) == 2


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/api/tx/" + "ab" * 32, "/api/tx/:hash"),
        ("/api/tx/" + "CD" * 32 + "/status", "/api/tx/:hash/status"),
        ("/api/v1/tx/" + "01" * 32 + "/rbf", "/api/v1/tx/:hash/rbf"),
        ("/api/block-height/840000", "/api/block-height/:n"),
        ("/api/v1/fees/recommended?x=1", "/api/v1/fees/recommended"),
        ("/testnet4/api/blocks/tip/height", "/testnet4/api/blocks/tip/height"),
    ],
)
def test_rest_paths_become_route_templates(path: str, endpoint: str) -> None:
    """Txids, hashes and heights are replaced, queries dropped: the label is a route template."""
    assert rest_endpoint(path) == endpoint


def test_rest_endpoint_label_values_are_bounded() -> None:
    """Past MAX_REST_ENDPOINTS distinct templates, new ones count as `other`."""
    metrics, registry = fresh()
    for i in range(MAX_REST_ENDPOINTS + 5):
        metrics.observe_rest(f"/api/route{i}", "200", 0.01)
    endpoints = {
        sample.labels["endpoint"]
        for family in registry.collect()
        for sample in family.samples
        if sample.name == "whale_rest_requests_total"
    }
    assert len(endpoints) == MAX_REST_ENDPOINTS + 1 and "other" in endpoints
    assert (
        registry.get_sample_value("whale_rest_requests_total", {"endpoint": "other", "code": "200"})
        == 5
    )


async def test_rest_requests_are_counted_by_template_and_code(sim: SimulatedMempool) -> None:
    """Real REST calls to the simulator are counted per route template and status, 404s too."""
    metrics, registry = fresh()
    tx = whale(sim)
    sim.add(tx)
    rest = MempoolRest(
        f"{sim.url}/api", transport=ObservedTransport.http(metrics.observe_rest, max_connections=2)
    )
    try:
        await rest.tx(tx["txid"])
        with pytest.raises(NotFound):
            await rest.tx("0" * 64)
        await rest.tip_height()
    finally:
        await rest.aclose()
    read = registry.get_sample_value
    assert read("whale_rest_requests_total", {"endpoint": "/api/tx/:hash", "code": "200"}) == 1
    assert read("whale_rest_requests_total", {"endpoint": "/api/tx/:hash", "code": "404"}) == 1
    assert (
        read("whale_rest_requests_total", {"endpoint": "/api/blocks/tip/height", "code": "200"})
        == 1
    )
    assert read("whale_rest_request_duration_seconds_count", {"endpoint": "/api/tx/:hash"}) == 2
    text = "\n".join(str(s) for family in registry.collect() for s in family.samples)
    assert tx["txid"] not in text and sim.url not in text


async def test_rest_transport_errors_are_counted_as_error() -> None:
    """A request that gets no response at all is counted with code `error`."""
    metrics, registry = fresh()
    transport = ObservedTransport.http(metrics.observe_rest, max_connections=1)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("http://127.0.0.1:1/api/blocks/tip/height")
    assert (
        registry.get_sample_value(
            "whale_rest_requests_total", {"endpoint": "/api/blocks/tip/height", "code": "error"}
        )
        == 1
    )


async def test_event_loop_lag_is_observed() -> None:
    """A loop blocked for 0.2 s shows up as at least 0.2 s of lag in the histogram."""
    lags: list[float] = []
    task = asyncio.create_task(watch_loop_lag(lags.append, interval=0.01))
    try:
        await wait_for(lambda: len(lags) >= 1, 10, "a first lag sample")
        seen = len(lags)
        time.sleep(0.2)  # block the loop on purpose: this is the lag being measured
        await wait_for(lambda: len(lags) > seen, 10, "the lag sample after the block")
    finally:
        task.cancel()
    assert max(lags[seen:]) >= 0.19
    assert min(lags) >= 0


async def test_whales_carry_txid_exemplars_in_openmetrics(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """Asked for OpenMetrics, /metrics links the whale counter and histogram to the txid."""
    exporter = await start_exporter(sim.url)
    await sim.wait_until(lambda s: s.connections == 1)
    tx = whale(sim, 250)
    sim.add(tx)
    await sim.flush()
    await wait_for(lambda: exporter.value("whale_transactions_total", flow="unknown") == 1)
    response = await exporter.http.get("/metrics", headers={"accept": OPENMETRICS})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    # prometheus_client's own OpenMetrics parser rejects a histogram with negative buckets (no
    # _sum by the spec), so read the exemplar lines directly: `series value # {labels} value ts`.
    exemplars = dict(
        re.findall(r'^(whale_transaction\S+) \S+ # \{txid="([0-9a-f]{64})"\}', response.text, re.M)
    )
    assert exemplars == {
        'whale_transactions_total{flow="unknown"}': tx["txid"],
        'whale_transaction_value_btc_bucket{le="250.0"}': tx["txid"],
    }
    plain = await exporter.metrics_text()  # the classic text format has no exemplars
    assert tx["txid"] not in plain and not re.search(r"txid=", plain)


async def test_esplora_requests_are_counted_too(start_exporter: StartExporter) -> None:
    """With --esplora-url, the bulk source's requests show in whale_rest_requests_total."""
    sim = SimulatedMempool(seed=12, auto=False, esplora=True)
    await sim.start()
    try:
        sim.add(whale(sim))
        exporter = await start_exporter(sim.url, esplora_url=sim.esplora_url)
        await wait_for(lambda: exporter.value("whale_transactions_total", flow="unknown") == 1)

        def esplora_ok() -> float:
            return sum(
                sample.value
                for family in exporter.registry.collect()
                for sample in family.samples
                if sample.name == "whale_rest_requests_total"
                and "/internal/mempool/txs" in sample.labels["endpoint"]
                and sample.labels["code"] == "200"
            )

        await wait_for(lambda: esplora_ok() >= 1, 30, "an esplora request counted")
    finally:
        await sim.stop()
