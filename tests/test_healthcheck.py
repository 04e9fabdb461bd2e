"""`mempool-whale-exporter healthcheck`, the containers' check, as a real child process against a
real exporter: plain HTTP, and HTTPS with basic auth, then stopped."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from certs import Authority
from conftest import StartExporter
from test_webconfig import tls_and_scrape_user

from exporter.sim.mempool import SimulatedMempool


async def healthcheck(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "healthcheck", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    _, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_healthy_over_http_then_unhealthy_once_stopped(
    sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """Exit 0 while the exporter answers /healthz; exit 1 with one line naming the URL after."""
    exporter = await start_exporter(sim.url)
    listen = exporter.base.removeprefix("http://")
    assert await healthcheck("--listen", listen) == (0, "")
    await exporter.close()
    code, err = await healthcheck("--listen", listen)
    assert code == 1
    assert err == f"mempool-whale-exporter: unhealthy: http://{listen}/healthz: ConnectError\n"


async def test_healthy_behind_tls_and_basic_auth(
    tmp_path: Path, sim: SimulatedMempool, start_exporter: StartExporter
) -> None:
    """With the web config, the check speaks HTTPS and takes a 401 (it has no password) for
    an answering server; the same port without the web config is not healthy."""
    web = tls_and_scrape_user(tmp_path, Authority(tmp_path))
    exporter = await start_exporter(sim.url, web_config_file=web)
    listen = exporter.base.removeprefix("http://")
    assert await healthcheck("--listen", listen, "--web-config-file", str(web)) == (0, "")
    code, err = await healthcheck("--listen", listen)  # plain HTTP to a TLS port
    assert code == 1 and f"http://{listen}/healthz" in err, err
