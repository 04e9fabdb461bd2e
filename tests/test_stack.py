"""The whole stack on loopback: simulator, exporter, Debian's real Prometheus and Alertmanager.

The committed configs are loaded and rewritten in temporary copies (1 s scrape and evaluation
intervals, `for:` shortened, 1 s Alertmanager grouping, loopback targets and ports), so the test
proves the files as shipped, only faster. Nothing leaves the machine: every webhook and the
SMTP smarthost of alerting/alertmanager.yml point at loopback.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import test_dashboards
import yaml
from conftest import EXCHANGES, Exporter, StartExporter
from support import tool, wait_for
from test_dashboards import DASHBOARD_FILES, load_dashboard, prometheus_targets, substitute

from exporter.sim.mempool import SimulatedMempool
from exporter.sim.receiver import Receiver, Request

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "prometheus"
PROMETHEUS_YML = PROMETHEUS_DIR / "prometheus.yml"
ALERTMANAGER_YML = ROOT / "alerting" / "alertmanager.yml"
JOB = "whale-exporter"
RULE_FOR = "3s"  # every `for:` of the alert rules, instead of minutes
# Grafana's $__rate_interval is max(4 x scrape interval, $__interval + scrape interval); with 1 s
# scrapes that is 4 s. 15 s keeps several samples in each window on a loaded machine.
RATE_INTERVAL = "15s"
STARTUP = 60.0  # seconds a server may take to come up on a loaded machine
EVENTS = 120.0  # seconds for whales, blocks, outcomes and notifications to show in Prometheus
ALERT = 90.0  # seconds for the stream alert to travel Prometheus -> Alertmanager -> Apprise
GRACE = 30.0  # seconds a dashboard query that is empty at first may take to answer
CLOSED_PORT = "127.0.0.1:1"  # privileged and unused: SMTP fails at once instead of resolving


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- configs ---------------------------------------------------------------------------------


def prometheus_config(
    directory: Path, *, exporter: str, prometheus: str, alertmanager: str
) -> Path:
    """A copy of prometheus/prometheus.yml and its rule files, fast and on loopback."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_YML.read_text(encoding="utf-8"))
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    targets = {JOB: exporter, "prometheus": prometheus, "alertmanager": alertmanager}
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert JOB in jobs, f"{PROMETHEUS_YML} has no {JOB} job"
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            static["targets"] = [targets[job["job_name"]]]
    for manager in config["alerting"]["alertmanagers"]:
        for static in manager["static_configs"]:
            static["targets"] = [alertmanager]
    # Keep rule_files as written: copy what each pattern matches to the same relative place.
    copied = 0
    for pattern in config["rule_files"]:
        for source in sorted(PROMETHEUS_DIR.glob(pattern)):
            rules: dict[str, Any] = yaml.safe_load(source.read_text(encoding="utf-8"))
            for group in rules["groups"]:
                for rule in group["rules"]:
                    if "for" in rule:
                        rule["for"] = RULE_FOR
            target = directory / source.relative_to(PROMETHEUS_DIR)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
            copied += 1
    assert copied, f"rule_files of {PROMETHEUS_YML} match no file"
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def alertmanager_config(directory: Path, *, relay: str, sink: str, token_file: Path) -> Path:
    """A copy of alerting/alertmanager.yml: 1 s grouping, on-call to the relay with the relay
    token from `token_file`, the rest to a sink."""
    config: dict[str, Any] = yaml.safe_load(ALERTMANAGER_YML.read_text(encoding="utf-8"))

    def shorten(route: dict[str, Any]) -> None:
        for key in ("group_wait", "group_interval"):
            if key in route:
                route[key] = "1s"
        for child in route.get("routes", []):
            shorten(child)

    config["route"].update(group_wait="1s", group_interval="1s")
    shorten(config["route"])
    config["global"]["smtp_smarthost"] = CLOSED_PORT
    relayed = 0
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            if urlsplit(hook["url"]).path == "/alertmanager":
                assert receiver["name"] == "oncall", "only on-call pages go to the relay"
                hook["url"] = relay
                hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
                relayed += 1
            else:
                hook["url"] = f"{sink}/{receiver['name']}"
        for slack in receiver.get("slack_configs", []):
            slack["api_url"] = f"{sink}/{receiver['name']}"
        for email in receiver.get("email_configs", []):
            email["smarthost"] = CLOSED_PORT
    assert relayed == 1, f"{ALERTMANAGER_YML}: expected one webhook to the exporter's relay"
    path = directory / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def apprise_config(directory: Path, receiver: Receiver) -> Path:
    """Tag the local receiver `oncall` (relayed pages) and `traders` (whale alerts)."""
    config = {
        "version": 1,
        "urls": [
            {receiver.url("/oncall"): [{"tag": "oncall"}]},
            {receiver.url("/traders"): [{"tag": "traders"}]},
        ],
    }
    path = directory / "apprise.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


# --- servers ---------------------------------------------------------------------------------


@dataclass
class Server:
    """A real server process on loopback, its HTTP client and its log."""

    name: str
    process: subprocess.Popen[bytes]
    http: httpx.AsyncClient
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        return f"--- last lines of {self.name}'s log ---\n" + "\n".join(text[-lines:])

    async def ready(self) -> None:
        async def up() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited at start\n{self.log_tail()}")
            try:
                return (await self.http.get("/-/ready")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(up, STARTUP, f"{self.name} to be ready", self.log_tail, interval=0.5)

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.http.get(path, params=params)
        assert response.status_code == 200, f"{self.name} {path}: {response.text}"
        return response.json()


@contextlib.contextmanager
def process(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a binary until the block ends, then terminate it (kill if it lingers) and reap it."""
    with log.open("wb") as out:
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield child
        finally:
            child.terminate()
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


@contextlib.asynccontextmanager
async def running(name: str, argv: list[str], port: int, log: Path) -> AsyncIterator[Server]:
    """A started server, ready to answer on 127.0.0.1:port; stopped when the block ends."""
    with process(argv, log) as child:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            started = Server(name, child, http, log)
            await started.ready()
            yield started


@dataclass
class Stack:
    """The running stack and the Prometheus queries the tests make."""

    sim: SimulatedMempool
    receiver: Receiver
    exporter: Exporter
    target: str  # the exporter's scrape target, the instance label
    prometheus: Server
    alertmanager: Server

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's series (a scalar counts as one)."""
        body = await self.prometheus.get("/api/v1/query", query=expr)
        assert body["status"] == "success", body
        data = body["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def holds(self, expr: str) -> Callable[[], Awaitable[bool]]:
        """A condition for `until`: the query returns at least one series."""

        async def check() -> bool:
            return bool(await self.query(expr))

        return check

    def logs(self) -> str:
        return self.prometheus.log_tail() + "\n" + self.alertmanager.log_tail()


@pytest.fixture
async def stack(tmp_path: Path, start_exporter: StartExporter) -> AsyncIterator[Stack]:
    """Everything started on loopback; stopped in reverse order, processes reaped."""
    prometheus_bin = tool("prometheus")
    alertmanager_bin = tool("prometheus-alertmanager")
    sim = SimulatedMempool(
        seed=7,
        auto=True,
        tx_rate=20,
        whale_rate=2,
        block_interval=3,
        poll_interval=0.5,
        exchange_addresses=EXCHANGES,
    )
    await sim.start()
    # As in docker-compose.yml: one token file, read by the exporter and sent by Alertmanager.
    token_file = tmp_path / "relay-token"
    token_file.write_text(secrets.token_urlsafe(32) + "\n", encoding="utf-8")
    try:
        async with Receiver() as receiver, contextlib.AsyncExitStack() as cleanup:
            exporter = await start_exporter(
                sim.url,
                environ={"WHALE_ALERTMANAGER_TOKEN_FILE": str(token_file)},
                apprise_config=apprise_config(tmp_path, receiver),
                check_interval=1,
                notify_timeout=5,
            )
            assert exporter.settings.alertmanager_token is not None  # the relay needs it
            cleanup.push_async_callback(exporter.close)
            target = exporter.base.removeprefix("http://")
            am_port, prom_port = free_port(), free_port()
            am_dir, prom_dir = tmp_path / "alertmanager", tmp_path / "prometheus"
            am_dir.mkdir()
            prom_dir.mkdir()
            am_yml = alertmanager_config(
                am_dir,
                relay=f"{exporter.base}/alertmanager",
                sink=f"http://127.0.0.1:{receiver.port}/alertmanager-sink",
                token_file=token_file,
            )
            am_argv = [
                alertmanager_bin,
                f"--config.file={am_yml}",
                f"--storage.path={am_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
                "--log.level=info",
            ]
            alertmanager = await cleanup.enter_async_context(
                running("alertmanager", am_argv, am_port, am_dir / "log")
            )
            prom_yml = prometheus_config(
                prom_dir,
                exporter=target,
                prometheus=f"127.0.0.1:{prom_port}",
                alertmanager=f"127.0.0.1:{am_port}",
            )
            prom_argv = [
                prometheus_bin,
                f"--config.file={prom_yml}",
                f"--storage.tsdb.path={prom_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                # Alerts evaluated before Alertmanager is discovered are dropped and only sent
                # again after this delay (default 1m): keep it as short as the intervals.
                "--rules.alert.resend-delay=1s",
                # As in docker-compose.yml: keep the exemplars ({txid}) the exporter exposes.
                "--enable-feature=exemplar-storage",
            ]
            prometheus = await cleanup.enter_async_context(
                running("prometheus", prom_argv, prom_port, prom_dir / "log")
            )
            yield Stack(sim, receiver, exporter, target, prometheus, alertmanager)
    finally:
        await sim.stop()


# --- the tests -------------------------------------------------------------------------------


def dashboard_queries() -> list[tuple[str, str]]:
    """(dashboard: panel, expr) for every Prometheus query of every dashboard."""
    return [
        (f"{path.stem}: {title}", expr)
        for path in DASHBOARD_FILES
        for title, expr in prometheus_targets(load_dashboard(path))
    ]


def variable_selectors() -> list[tuple[str, str, str]]:
    """(dashboard, label, series selector) of every `label_values(selector, label)` variable."""
    found = []
    for path in DASHBOARD_FILES:
        for var in load_dashboard(path)["templating"]["list"]:
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", str(var.get("query", "")))
            if match:
                found.append((path.stem, match.group(2), match.group(1)))
    return found


async def test_every_dashboard_query_returns_data(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With whales, blocks, outcomes and notifications flowing, every dashboard query has data."""
    monkeypatch.setitem(test_dashboards.VARIABLE_VALUES, "job", JOB)
    monkeypatch.setitem(test_dashboards.VARIABLE_VALUES, "instance", stack.target)
    monkeypatch.setitem(test_dashboards.VARIABLE_VALUES, "__rate_interval", RATE_INTERVAL)
    selector = f'job="{JOB}",instance="{stack.target}"'
    # Events first, read through Prometheus: whales detected, mined (outcomes and accuracy) and
    # notified; then enough scrapes that every rate window holds several samples.
    for what, expr in [
        ("the exporter target up", f"up{{{selector}}} == 1"),
        ("whales detected", f"sum(whale_transactions_total{{{selector}}}) > 0"),
        ("whales confirmed", f'whale_outcomes_total{{{selector},outcome="confirmed"}} > 0'),
        ("resolved predictions", f'whale_prediction_outcomes{{{selector},window="1h"}} > 0'),
        ("confirmation blocks observed", f"whale_confirmation_blocks_count{{{selector}}} > 0"),
        ("whale notifications sent", f"whale_notifications_sent_total{{{selector}}} > 0"),
        ("recording rules evaluated", f"instance:whale_predictions:increase1h{{{selector}}}"),
        ("REST requests counted", f"whale_rest_requests_total{{{selector}}} > 0"),
        ("a full rate window", f"count_over_time(up{{{selector}}}[{RATE_INTERVAL}]) >= 10"),
    ]:
        await wait_for(stack.holds(expr), EVENTS, what, stack.logs, interval=0.5)

    # "Data" is at least one series, as Grafana needs to draw a panel. A quantile over a window
    # without events is a NaN series (a gap in Grafana); the waits above make such windows rare.
    # On a loaded machine a scrape can miss, leaving a short rate window with one sample: a
    # query that is empty at first gets a grace period, then it must answer.
    queries = dashboard_queries()
    assert len(queries) > 50
    empty = []
    for where, expr in queries:
        if await stack.query(substitute(expr)):
            continue
        try:
            await wait_for(stack.holds(substitute(expr)), GRACE, where, interval=0.5)
        except AssertionError:
            empty.append(f"{where}: {substitute(expr)}")
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)

    for dashboard, label, series in variable_selectors():
        path = f"/api/v1/label/{label}/values"
        body = await stack.prometheus.get(path, **{"match[]": substitute(series)})
        expected = JOB if label == "job" else stack.target
        assert expected in body["data"], f"{dashboard}: ${label} offers {body['data']}"


def pages(receiver: Receiver, alertname: str) -> list[Request]:
    """Notifications the receiver got on its `oncall` path that name `alertname`."""
    return [
        request
        for request in receiver.received
        if request.path == "/oncall"
        and isinstance(request.payload, dict)
        and alertname in f"{request.payload.get('title')} {request.payload.get('message')}"
    ]


async def test_stream_loss_pages_oncall_through_alertmanager_and_the_relay(stack: Stack) -> None:
    """Stopping the simulator fires WhaleStreamDisconnected, which reaches Apprise via the relay."""
    selector = f'job="{JOB}",instance="{stack.target}"'
    am = stack.alertmanager

    async def watchdog_in_alertmanager() -> bool:
        alerts = await am.get("/api/v2/alerts", filter='alertname="WhaleWatchdog"')
        return bool(alerts)

    # The path Prometheus -> Alertmanager works, and the stream is up, before the fault.
    connected = f"whale_stream_connected{{{selector}}} == 1"
    await wait_for(
        stack.holds(connected),
        STARTUP,
        "the stream connected in Prometheus",
        stack.logs,
        interval=0.5,
    )
    await wait_for(
        watchdog_in_alertmanager, ALERT, "WhaleWatchdog in Alertmanager", stack.logs, interval=0.5
    )
    firing = f'ALERTS{{alertname="WhaleStreamDisconnected",alertstate="firing",{selector}}}'
    assert not await stack.query(firing), "the stream alert fired before the stream stopped"
    assert not pages(stack.receiver, "WhaleStreamDisconnected")

    await stack.sim.stop()

    await wait_for(
        stack.holds(firing), ALERT, "the alert firing in Prometheus", stack.logs, interval=0.5
    )

    async def paged() -> bool:
        return bool(pages(stack.receiver, "WhaleStreamDisconnected"))

    await wait_for(paged, ALERT, "the page at the Apprise receiver", stack.logs, interval=0.5)
    page = pages(stack.receiver, "WhaleStreamDisconnected")[0].payload
    assert page["title"].startswith("[FIRING:1] "), page
    assert "not connected to the mempool stream" in page["title"], page
    assert "severity critical" in page["message"], page
    assert page["type"] == "failure", page


async def test_whale_exemplars_reach_prometheus(stack: Stack) -> None:
    """Prometheus stores the {txid} exemplar of whale_transactions_total, naming a real whale."""
    selector = f'job="{JOB}",instance="{stack.target}"'
    query = f"whale_transactions_total{{{selector}}}"
    await wait_for(stack.holds(f"sum({query}) > 0"), EVENTS, "whales detected", stack.logs)

    async def exemplars() -> list[str]:
        now = time.time()
        body = await stack.prometheus.get(
            "/api/v1/query_exemplars", query=query, start=now - 600, end=now + 60
        )
        assert body["status"] == "success", body
        return [
            exemplar["labels"].get("txid", "")
            for series in body["data"]
            for exemplar in series["exemplars"]
        ]

    async def stored() -> bool:
        return bool(await exemplars())

    await wait_for(stored, EVENTS, "an exemplar in Prometheus", stack.logs, interval=0.5)
    whales = {whale["txid"] for whale in await stack.exporter.whales(limit=1000)}
    txids = await exemplars()
    assert txids and set(txids) <= whales, (txids, whales)
