"""The command line: configuration errors, and a clean exit on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import duckdb
import pytest

from exporter.sim.mempool import SimulatedMempool


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WHALE_")}
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextlib.asynccontextmanager
async def exporter_process(
    *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """The exporter as a real child process (stderr piped); killed if the test leaves it up."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WHALE_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", *args,
        env={**clean, **(env or {})}, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def stop(process: asyncio.subprocess.Process) -> str:
    """SIGTERM, then the whole stderr; the exit status must be 0."""
    process.send_signal(signal.SIGTERM)
    assert process.stderr is not None
    logs = (await asyncio.wait_for(process.stderr.read(), 20)).decode()
    assert await asyncio.wait_for(process.wait(), 10) == 0
    return logs


@pytest.mark.parametrize(
    ("args", "env", "setting"),
    [
        (["--threshold-btc", "-5"], {}, "--threshold-btc"),
        (["--threshold-btc", "22000000"], {}, "--threshold-btc"),
        (["--mempool-url", "ftp://example.org"], {}, "--mempool-url"),
        ([], {"WHALE_LISTEN": "nonsense"}, "WHALE_LISTEN"),
        ([], {"WHALE_LOG_FORMAT": "xml"}, "WHALE_LOG_FORMAT"),
        (["--exchange-addresses", "/nonexistent.csv"], {}, "--exchange-addresses"),
        (["--apprise-url", "not a url"], {}, "--apprise-url / WHALE_APPRISE_URLS"),
    ],
)
def test_config_errors_exit_2_with_one_line(
    args: list[str], env: dict[str, str], setting: str
) -> None:
    """A bad setting exits with status 2 and one line naming it, without a traceback."""
    result = run_cli(*args, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert setting in lines[0]
    assert "Traceback" not in result.stderr


async def test_sigterm_flushes_and_exits_zero(tmp_path: Path) -> None:
    """SIGTERM stops a running exporter with exit status 0, its whales stored."""
    sim = SimulatedMempool(seed=2, auto=False)
    await sim.start()
    try:
        async with exporter_process(
            "--mempool-url", sim.url, "--db", str(tmp_path / "w.duckdb"),
            "--listen", "127.0.0.1:0", "--log-format", "json",
        ) as process:  # fmt: skip
            await sim.wait_until(lambda s: s.connections == 1)
            tx = sim.make_tx(outputs=[(sim.random_address(), 300 * 100_000_000)])
            sim.add(tx)
            await sim.flush()
            assert process.stderr is not None
            line = b""
            while tx["txid"].encode() not in line:  # the exporter logs each whale it stores
                line = await asyncio.wait_for(process.stderr.readline(), 20)
                assert line, "exporter exited early"
            await stop(process)
    finally:
        await sim.stop()
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        assert con.execute("SELECT txid FROM signals").fetchall() == [(tx["txid"],)]


def test_listen_port_in_use_is_a_config_error(tmp_path: Path) -> None:
    """A port already taken exits 2 with a line naming --listen."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--listen", f"127.0.0.1:{port}", "--db", str(tmp_path / "w.duckdb"),
                         "--mempool-url", "http://127.0.0.1:9")  # fmt: skip
    assert result.returncode == 2
    assert "--listen" in result.stderr and "Traceback" not in result.stderr


def test_readme_documents_every_setting_and_metric() -> None:
    """Every flag, environment variable and metric name appears in the reference docs."""
    from prometheus_client import CollectorRegistry

    from exporter.config import Settings, env_name, flag
    from exporter.metrics import Metrics

    docs = Path(__file__).parent.parent / "docs"
    readme = "".join(
        (docs / name).read_text(encoding="utf-8") for name in ("configuration.md", "metrics.md")
    )
    for name in Settings.model_fields:
        assert f"`{flag(name)}`" in readme, name
        assert f"`{env_name(name)}`" in readme, name
    registry = CollectorRegistry()
    Metrics(registry, process=False)
    for family in registry.collect():
        suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
        assert f"`{family.name}{suffix}`" in readme, family.name


async def test_secrets_never_reach_logs_metrics_or_api(tmp_path: Path) -> None:
    """Apprise and webhook tokens and the webhook key are absent from debug logs, /metrics and
    every API answer."""
    import httpx

    from exporter.sim.receiver import Receiver

    token, password = "S3cr3tT0kenXYZ", "hunter2pass"

    async def failing(request: object) -> int:
        return 500  # so the send is retried and its error logged

    receiver = await Receiver(respond=failing).start()
    hook = await Receiver(respond=failing).start()
    hook_token, hook_secret = "W3bh00kT0kenABC", "whsec-signing-key-0123"
    sim = SimulatedMempool(seed=4, auto=False)
    await sim.start()
    url = f"json://user:{password}@127.0.0.1:{receiver.port}/hook?+X-Token={token}"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        async with exporter_process(
            "--mempool-url", sim.url, "--db", str(tmp_path / "w.duckdb"),
            "--listen", f"127.0.0.1:{port}", "--log-level", "DEBUG",
            "--apprise-url", url, "--notify-retries", "1",
            "--webhook-url", f"http://127.0.0.1:{hook.port}/in/{hook_token}",
            env={"WHALE_ALERTMANAGER_TOKEN": "am-token-1234567890",
                 "WHALE_WEBHOOK_SECRET": hook_secret},
        ) as process:  # fmt: skip
            await sim.wait_until(lambda s: s.connections >= 1)
            tx = sim.make_tx(outputs=[(sim.random_address(), 300 * 100_000_000)])
            sim.add(tx)
            await sim.flush()
            await receiver.wait_for(2, timeout=30)  # the first send and its retry
            await hook.wait_for(2, timeout=30)  # the signed webhook too
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                answers = [
                    (await http.get(path)).text
                    for path in ("/metrics", "/api/v1/whales", "/api/v1/summary", "/", "/readyz")
                ]
                relay = await http.post("/alertmanager", json={"version": "4"})
                assert relay.status_code == 401
            logs = await stop(process)
    finally:
        await sim.stop()
        await receiver.close()
        await hook.close()
    assert hook.received[0].path == f"/in/{hook_token}"  # the token really was used
    assert tx["txid"] in logs and "DEBUG" in logs  # the log did say things
    for text in (logs, *answers, relay.text):
        for secret in (token, password, "am-token-1234567890", hook_token, hook_secret):
            assert secret not in text


def test_log_lines_mask_known_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    """Every log line, JSON or text, masks the configured secrets but keeps plain URLs."""
    import logging

    from exporter import logs
    from exporter.redact import url_secrets

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        secrets = url_secrets("tgram://123456789:AAHdqTcvCHsecret/-100123")
        logs.configure("INFO", "json", secrets)
        logging.getLogger("exporter.test").warning(
            "send to tgram://123456789:AAHdqTcvCHsecret/-100123 failed; see http://example.org/x"
        )
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    line = capsys.readouterr().err
    assert "AAHdqTcvCHsecret" not in line and "123456789" not in line
    assert "http://example.org/x" in line and '"level":"warning"' in line
