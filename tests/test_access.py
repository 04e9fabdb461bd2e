"""Who may use which route: API tokens, the relay's default, and secrets kept out of answers."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import httpx
import pytest
from conftest import StartExporter
from support import wait_for
from test_cli import exporter_process, stop

from exporter.app import _warn_if_open
from exporter.config import load
from exporter.shell.http import relay_served
from exporter.shell.http.auth import Tokens
from exporter.shell.http.middleware import Access
from exporter.sim.mempool import SimulatedMempool

TOKENS = ["bot-token-aaaaaaaaaaaaaaaa", "grafana-token-bbbbbbbbbbbbbbbb"]


async def test_api_requires_a_token_while_metrics_and_probes_do_not(
    sim: SimulatedMempool, start_exporter: StartExporter, caplog: pytest.LogCaptureFixture
) -> None:
    """With --api-token, /api/v1/* needs a valid one (401); probes and /metrics stay open."""
    caplog.set_level(logging.DEBUG)
    exporter = await start_exporter(sim.url, api_tokens=TOKENS)
    http = exporter.http
    for headers in ({}, {"authorization": "Bearer wrong-token-cccccccccccc"},
                    {"authorization": f"Basic {TOKENS[0]}"}):  # fmt: skip
        refused = await http.get("/api/v1/whales", headers=headers)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
    for token in TOKENS:
        ok = await http.get("/api/v1/whales", headers={"authorization": f"Bearer {token}"})
        assert ok.status_code == 200
    for path in ("/metrics", "/healthz", "/"):
        assert (await http.get(path)).status_code == 200, path
    assert await exporter.scraped("whale_http_rejected_requests_total", reason="unauthorized") == 3
    answers = [(await http.get(p)).text for p in ("/metrics", "/", "/healthz")]
    answers.append(
        (
            await http.get("/api/v1/openapi.json", headers={"authorization": f"Bearer {TOKENS[1]}"})
        ).text
    )
    for token in TOKENS:
        assert all(token not in text for text in answers)
        assert token not in caplog.text


async def test_relay_is_served_on_loopback(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """On a loopback address the relay exists without a token (it is not a 404)."""
    exporter = await start_exporter(sim.url)
    answer = await exporter.http.post("/alertmanager", json={"version": "4"})
    assert answer.status_code == 422  # reached the relay, which rejects the payload


def test_relay_needs_a_token_off_loopback(caplog: pytest.LogCaptureFixture) -> None:
    """Off loopback the relay is off unless a token is set, and one warning says why."""
    settings = load({"listen": "0.0.0.0:9743"}, environ={})
    assert settings.loopback is False
    assert relay_served(settings) is False
    assert relay_served(settings.model_copy(update={"alertmanager_token": "x" * 20})) is True
    for host in ("127.0.0.1", "[::1]", "localhost", "127.0.0.2"):
        assert relay_served(load({"listen": f"{host}:9743"}, environ={})), host
    with caplog.at_level(logging.WARNING):
        _warn_if_open(settings, Access(Tokens([]), relay_token=False))
    lines = [r.getMessage() for r in caplog.records]
    assert any("POST /alertmanager is off" in line and "--alertmanager-token" in line
               for line in lines)  # fmt: skip
    assert any("open to anyone" in line and "--api-token" in line for line in lines)


def test_default_listen_address_is_loopback() -> None:
    """Out of the box nothing listens beyond this machine."""
    assert load({}, environ={}).loopback


def test_tokens_from_flags_and_environment(tmp_path: Path) -> None:
    """WHALE_API_TOKENS splits on commas and spaces; a short token is a config error."""
    settings = load({}, environ={"WHALE_API_TOKENS": f"{TOKENS[0]}, {TOKENS[1]}"})
    assert [t.get_secret_value() for t in settings.api_tokens] == TOKENS
    assert TOKENS[0] not in repr(settings)
    with pytest.raises(Exception, match="--api-token / WHALE_API_TOKENS"):
        load({"api_tokens": ["short"]}, environ={})


def test_token_match_names_the_token_not_its_value() -> None:
    """A valid bearer token is named by position; anything else matches nothing."""
    tokens = Tokens(TOKENS)
    assert tokens.match(f"Bearer {TOKENS[1]}") == "token-2"
    assert tokens.match(f"bearer {TOKENS[0]}") == "token-1"
    for header in (None, "", "Bearer", f"Bearer {TOKENS[0]}x", f"Basic {TOKENS[0]}"):
        assert tokens.match(header) is None


async def test_tokens_stay_out_of_a_real_process_logs(
    tmp_path: Path, sim: SimulatedMempool
) -> None:
    """Given by environment, used and refused at debug level: the token never reaches the log."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with exporter_process(
        "--mempool-url", sim.url, "--db", str(tmp_path / "w.duckdb"),
        "--listen", f"127.0.0.1:{port}", "--log-level", "DEBUG",
        env={"WHALE_API_TOKENS": ",".join(TOKENS)},
    ) as process:  # fmt: skip
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

            async def up() -> bool:
                try:
                    return (await http.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(up, 30, "the exporter to listen")
            for token in (*TOKENS, "not-a-token-dddddddddddddd"):
                await http.get("/api/v1/whales", headers={"authorization": f"Bearer {token}"})
            metrics = (await http.get("/metrics")).text
        logs = await stop(process)
    assert "DEBUG" in logs
    for token in TOKENS:
        assert token not in logs and token not in metrics
