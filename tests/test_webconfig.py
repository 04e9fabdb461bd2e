"""The web config file: real TLS, real bcrypt basic auth, headers, SIGHUP reloads, bad files."""

from __future__ import annotations

import asyncio
import base64
import re
import signal
import socket
import ssl
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import yaml
from certs import Authority, Pair
from conftest import StartExporter
from support import tool, wait_for
from test_cli import exporter_process, run_cli, stop
from test_stack import process

from exporter.errors import ConfigError
from exporter.shell.http import auth, webconfig
from exporter.sim.mempool import SimulatedMempool

SETTING = "--web-config-file / WHALE_WEB_CONFIG_FILE"
ROOT = Path(__file__).resolve().parent.parent


def hashed(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {token}"}


def write_config(path: Path, **sections: Any) -> Path:
    path.write_text(yaml.safe_dump(sections), encoding="utf-8")
    return path


def tls_section(server: Pair, **more: str) -> dict[str, str]:
    return {"cert_file": str(server.cert), "key_file": str(server.key), **more}


def tls_and_scrape_user(tmp_path: Path, ca: Authority) -> Path:
    """web.yml: HTTPS with a certificate from `ca`, and the user prometheus / scrape-pass."""
    return write_config(
        tmp_path / "web.yml",
        tls_server_config=tls_section(ca.issue("server")),
        basic_auth_users={"prometheus": hashed("scrape-pass")},
    )


def client_context(ca: Authority, client: Pair | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.pair.cert))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    return context


async def test_tls_basic_auth_and_headers_guard_every_route(
    tmp_path: Path, sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """Over HTTPS every route wants a bcrypt user; refusals too carry the configured headers."""
    ca = Authority(tmp_path)
    web = write_config(
        tmp_path / "web.yml",
        tls_server_config=tls_section(ca.issue("server"), min_version="TLS12"),
        basic_auth_users={"prometheus": hashed("scrape-pass"), "grafana": hashed("dash-pass")},
        http_server_config={"headers": {"X-Frame-Options": "DENY"}},
    )
    exporter = await start_exporter(sim.url, web_config_file=web)
    base = exporter.base.replace("http://", "https://")
    async with httpx.AsyncClient(base_url=base, verify=client_context(ca), timeout=10) as http:
        for path in ("/metrics", "/healthz", "/readyz", "/", "/api/v1/whales"):
            refused = await http.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"].startswith("Basic")
            assert refused.headers["x-frame-options"] == "DENY"
            allowed = await http.get(path, headers=basic("prometheus", "scrape-pass"))
            assert allowed.status_code in (200, 503), path  # readyz may be 503, never 401
            assert allowed.headers["x-frame-options"] == "DENY"
        for user, password in (("prometheus", "dash-pass"), ("nobody", "scrape-pass")):
            wrong = await http.get("/metrics", headers=basic(user, password))
            assert wrong.status_code == 401
        assert (await http.get("/metrics", headers=basic("grafana", "dash-pass"))).is_success
    async with httpx.AsyncClient(base_url=exporter.base, timeout=10) as plain:
        with pytest.raises(httpx.TransportError):
            await plain.get("/healthz")  # plain HTTP on the TLS port is not answered


async def test_client_certificates_when_required(
    tmp_path: Path, sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """RequireAndVerifyClientCert refuses a client without a certificate from client_ca_file."""
    ca = Authority(tmp_path)
    web = write_config(
        tmp_path / "web.yml",
        tls_server_config=tls_section(
            ca.issue("server"),
            client_ca_file=str(ca.pair.cert),
            client_auth_type="RequireAndVerifyClientCert",
        ),
    )
    exporter = await start_exporter(sim.url, web_config_file=web)
    base = exporter.base.replace("http://", "https://")
    async with httpx.AsyncClient(base_url=base, verify=client_context(ca), timeout=10) as bare:
        with pytest.raises(httpx.TransportError):
            await bare.get("/healthz")
    (tmp_path / "other").mkdir()
    stranger = Authority(tmp_path / "other", "other CA")
    for client, ok in ((ca.issue("client", client=True), True),
                       (stranger.issue("intruder", client=True), False)):  # fmt: skip
        context = client_context(ca, client)
        async with httpx.AsyncClient(base_url=base, verify=context, timeout=10) as http:
            if ok:
                assert (await http.get("/healthz")).status_code == 200
            else:
                with pytest.raises(httpx.TransportError):
                    await http.get("/healthz")


async def test_api_tokens_and_basic_auth_together(
    tmp_path: Path, sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """With both, /api/v1/* takes the bearer token and every other route the basic-auth user."""
    token = "api-token-0123456789abcdef"
    web = write_config(tmp_path / "web.yml", basic_auth_users={"prometheus": hashed("pw")})
    exporter = await start_exporter(sim.url, web_config_file=web, api_tokens=[token])
    http = exporter.http
    assert (await http.get("/api/v1/whales", headers=basic("prometheus", "pw"))).status_code == 401
    ok = await http.get("/api/v1/whales", headers={"authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    metrics = await http.get("/metrics", headers={"authorization": f"Bearer {token}"})
    assert metrics.status_code == 401
    assert (await http.get("/metrics", headers=basic("prometheus", "pw"))).status_code == 200


async def test_verified_credentials_are_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    """bcrypt runs once per user and password; a wrong password is checked every time."""
    calls = []
    real = auth._checkpw

    def counting(password: bytes, hashed_password: bytes | None) -> bool:
        calls.append(password)
        return real(password, hashed_password)

    monkeypatch.setattr(auth, "_checkpw", counting)
    users = auth.BasicAuth({"prometheus": hashed("right")})
    for _ in range(5):
        assert await users.check(basic("prometheus", "right")["authorization"])
    assert len(calls) == 1
    for _ in range(2):
        assert not await users.check(basic("prometheus", "wrong")["authorization"])
    assert len(calls) == 3
    assert not await users.check("Basic !!!not-base64")


async def test_sighup_reloads_users_and_certificates(tmp_path: Path, sim: SimulatedMempool) -> None:
    """SIGHUP swaps users and certificates; a broken file then keeps the running config."""
    ca = Authority(tmp_path)
    first, second = ca.issue("first"), ca.issue("second")
    web = write_config(
        tmp_path / "web.yml",
        tls_server_config=tls_section(first),
        basic_auth_users={"alice": hashed("alice-pass")},
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"https://127.0.0.1:{port}"

    def served_cert() -> str:
        return ssl.get_server_certificate(("127.0.0.1", port), ca_certs=str(ca.pair.cert))

    async with exporter_process(
        "--mempool-url", sim.url, "--db", str(tmp_path / "w.duckdb"),
        "--listen", f"127.0.0.1:{port}", "--web.config.file", str(web),
    ) as process:  # fmt: skip
        async with httpx.AsyncClient(base_url=base, verify=client_context(ca), timeout=10) as http:

            async def status(user: str, password: str) -> int:
                try:
                    return (await http.get("/healthz", headers=basic(user, password))).status_code
                except httpx.TransportError:
                    return 0  # not listening yet

            await wait_for(lambda: _is(status("alice", "alice-pass"), 200), timeout=30)
            assert served_cert() == first.cert.read_text()
            write_config(
                web,
                tls_server_config=tls_section(second),
                basic_auth_users={"bob": hashed("bob-pass")},
            )
            process.send_signal(signal.SIGHUP)
            await wait_for(lambda: _is(status("bob", "bob-pass"), 200), what="bob after SIGHUP")
            assert await status("alice", "alice-pass") == 401
            assert await asyncio.to_thread(served_cert) == second.cert.read_text()
            web.write_text("basic_auth_users: {carol: plain-text}\n", encoding="utf-8")
            process.send_signal(signal.SIGHUP)

            async def reload_failed() -> bool:
                text = (await http.get("/metrics", headers=basic("bob", "bob-pass"))).text
                return "whale_web_config_last_reload_successful 0.0" in text

            await wait_for(reload_failed, what="the failed reload in /metrics")
            assert await status("bob", "bob-pass") == 200
        logs = await stop(process)
    assert "web config reloaded" in logs
    assert "web config reload failed" in logs and "not a bcrypt hash" in logs


async def _is(awaitable: Any, expected: int) -> bool:
    return bool(await awaitable == expected)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("basic_auth_users: {alice: secret}\n", "not a bcrypt hash"),
        ("basic_auth_user: {}\n", "basic_auth_user"),
        (
            "tls_server_config: {cert_file: missing.crt, key_file: missing.key}\n",
            "tls_server_config",
        ),
        ("tls_server_config: [unclosed\n", "cannot read"),
        ("http_server_config: {headers: {Server: x}}\n", "cannot be set"),
    ],
)
def test_broken_web_config_exits_2_with_one_line(tmp_path: Path, content: str, says: str) -> None:
    """A broken web config file stops the start: status 2, one line naming the setting."""
    web = tmp_path / "web.yml"
    web.write_text(content, encoding="utf-8")
    result = run_cli("--web-config-file", str(web), "--db", str(tmp_path / "w.duckdb"),
                     "--mempool-url", "http://127.0.0.1:9")  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert SETTING in lines[0] and says in lines[0] and "Traceback" not in result.stderr


def test_client_auth_needs_a_ca(tmp_path: Path) -> None:
    """Verifying client certificates without client_ca_file is a config error."""
    ca = Authority(tmp_path)
    web = write_config(
        tmp_path / "web.yml",
        tls_server_config=tls_section(ca.issue("s"), client_auth_type="RequireAndVerifyClientCert"),
    )
    with pytest.raises(ConfigError, match="needs client_ca_file"):
        webconfig.load(web)


def scrape_config_from_example(ca: Path, password_file: Path, target: str) -> dict[str, Any]:
    """prometheus/prometheus.yml's exporter job with its commented TLS + basic-auth lines on."""
    text = (ROOT / "prometheus" / "prometheus.yml").read_text(encoding="utf-8")
    enabled = re.sub(r"^(\s+)# (scheme|tls_config|basic_auth):", r"\1\2:", text, flags=re.M)
    config = yaml.safe_load(enabled)
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "whale-exporter"]
    assert job["scheme"] == "https", "the commented example is gone from prometheus.yml"
    job["tls_config"]["ca_file"] = str(ca)
    job["basic_auth"]["password_file"] = str(password_file)
    job["static_configs"] = [{"targets": [target]}]
    return {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"}, "scrape_configs": [job]}


async def test_real_prometheus_scrapes_over_tls_with_basic_auth(
    tmp_path: Path, sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """Debian's Prometheus, configured as prometheus.yml's example shows, scrapes the exporter."""
    ca = Authority(tmp_path)
    web = tls_and_scrape_user(tmp_path, ca)
    exporter = await start_exporter(sim.url, web_config_file=web)
    password = tmp_path / "whale-password"
    password.write_text("scrape-pass", encoding="utf-8")
    target = exporter.base.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config_from_example(ca.pair.cert, password, target)))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "prometheus.log"
    argv = [tool("prometheus"), f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.path={tmp_path / 'data'}"]  # fmt: skip
    with process(argv, log) as child:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:

            async def target_up() -> bool:
                if child.poll() is not None:
                    raise AssertionError(log.read_text(errors="replace")[-3000:])
                try:
                    body = (await http.get("/api/v1/targets")).json()
                except (httpx.TransportError, ValueError):
                    return False
                active = body["data"]["activeTargets"]
                return bool(active) and active[0]["health"] == "up"

            def log_tail() -> str:
                return log.read_text(errors="replace")[-3000:]

            await wait_for(target_up, 60, "the exporter target up", log_tail, interval=0.5)
    assert exporter.value("whale_http_rejected_requests_total", reason="unauthorized") == 0
