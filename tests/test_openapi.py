"""The OpenAPI document, and schemathesis against the live exporter on loopback."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
from conftest import StartExporter
from support import sim_whale as whale
from support import wait_for

from exporter.sim.mempool import SimulatedMempool

TOKEN = "schemathesis-token-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}
PATHS = {"/", "/metrics", "/healthz", "/readyz", "/api/v1/openapi.json", "/api/v1/whales",
         "/api/v1/whales/stream", "/api/v1/whales/{txid}", "/api/v1/summary",
         "/alertmanager"}  # fmt: skip


async def test_document_describes_every_route_and_its_credentials(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """Every route is in the document; with tokens the API asks for a bearer token."""
    exporter = await start_exporter(sim.url, api_tokens=[TOKEN])
    assert (await exporter.http.get("/api/v1/openapi.json")).status_code == 401
    document = (await exporter.http.get("/api/v1/openapi.json", headers=AUTH)).json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == PATHS
    whales = document["paths"]["/api/v1/whales"]["get"]
    assert whales["security"] == [{"bearer": []}]
    assert {p["name"] for p in whales["parameters"]} == {
        "limit", "since", "until", "flow", "min_btc", "status", "outcome", "min_urgency", "rbf"
    }  # fmt: skip
    assert {"200", "401", "422", "429"} <= set(whales["responses"])
    assert document["paths"]["/metrics"]["get"]["security"] == []


async def test_schemathesis_finds_no_5xx_and_no_nonconforming_answer(
    sim: SimulatedMempool, start_exporter: StartExporter, tmp_path: Path
) -> None:
    """schemathesis fuzzes every operation but the endless stream: no 5xx, answers conform."""
    exporter = await start_exporter(
        sim.url, api_tokens=[TOKEN], api_rate_limit=100_000, api_rate_burst=100_000
    )
    await sim.wait_until(lambda s: s.connections == 1)
    for btc in (150, 300, 4_000):
        sim.add(whale(sim, btc))
    await sim.flush()
    await wait_for(lambda: exporter.value("whale_transactions_total", flow="unknown") == 3)
    await sim.mine([])
    async with httpx.AsyncClient(base_url=exporter.base) as http:
        assert (await http.get("/readyz")).status_code == 200
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "schemathesis.cli", "run",
        f"{exporter.base}/api/v1/openapi.json",
        "--header", f"Authorization: Bearer {TOKEN}",
        "--checks", "all",
        # The relay reads truncatedAlerts 3.0 as no integer, which JSON Schema's integer allows.
        "--exclude-checks", "positive_data_acceptance",
        "--exclude-path", "/api/v1/whales/stream",  # endless by design
        "--phases", "coverage,fuzzing",
        "--max-examples", "8",
        "--seed", "7",
        "--workers", "1",
        "--request-timeout", "20",
        "--no-color",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,  # its cache directory goes there
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 600)
    report = output.decode(errors="replace")
    assert process.returncode == 0, report[-6000:]
    assert "No issues found" in report, report[-3000:]


async def test_since_takes_date_times_only(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """`since` is an ISO 8601 date-time as documented; numbers, bare dates, nonsense get 422."""
    exporter = await start_exporter(sim.url)
    for value in ("2026-01-31T12:00:00Z", "2026-01-31T12:00:00", "2026-01-31T13:00:00+01:00"):
        assert (await exporter.http.get("/api/v1/whales", params={"since": value})).is_success
    for value in ("0.5", "1767225600", "2026-01-31", "2026-13-01T00:00:00Z", "soon"):
        answer = await exporter.http.get("/api/v1/whales", params={"since": value})
        assert answer.status_code == 422, value
        assert answer.json()["details"][0]["parameter"] == "since"
