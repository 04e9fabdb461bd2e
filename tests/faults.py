"""Fault-injection helpers: the exporter as a child process, a small disk, a faulty proxy.

Everything runs on 127.0.0.1; each helper stops what it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import sim_whale, wait_for

SERVING = re.compile(r"serving on http://127\.0\.0\.1:(\d+)")


class ExporterProcess:
    """`python -m exporter run` as a child; stderr is collected line by line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.env = env or {}
        self.lines: list[str] = []
        self.base = ""
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self.http = httpx.AsyncClient(timeout=10)

    async def start(self) -> ExporterProcess:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("WHALE_")}
        self.lines = []
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "exporter", "run", "--listen", "127.0.0.1:0",
            "--api-rate-limit", "1000", "--api-rate-burst", "1000", *self.args,
            env={**clean, **self.env}, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())
        await wait_for(lambda: self.port is not None or self.exited, 30, "the exporter to serve",
                       lambda: self.log)  # fmt: skip
        assert self.port is not None, self.log
        self.base = f"http://127.0.0.1:{self.port}"
        return self

    async def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for raw in self.process.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    @property
    def port(self) -> int | None:
        for line in self.lines:
            if match := SERVING.search(line):
                return int(match.group(1))
        return None

    @property
    def exited(self) -> bool:
        return self.process is None or self.process.returncode is not None

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no flush."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        if self._reader is not None:
            await self._reader

    async def stop(self) -> int:
        """SIGTERM and wait; returns the exit status."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        status = await asyncio.wait_for(self.process.wait(), 30)
        if self._reader is not None:
            await self._reader
        return status

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.http.get(self.base + path, params=params)

    async def whales(self) -> list[dict[str, Any]]:
        response = await self.get("/api/v1/whales", limit=1000)
        assert response.status_code == 200, response.text
        return response.json()["whales"]  # type: ignore[no-any-return]

    async def metric(self, name: str, **labels: str) -> float | None:
        text = (await self.get("/metrics")).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return sample.value
        return None

    async def aclose(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader
        await self.http.aclose()


@contextlib.asynccontextmanager
async def exporter_process(*args: str, **kwargs: Any) -> AsyncIterator[ExporterProcess]:
    process = ExporterProcess(*args, **kwargs)
    try:
        yield await process.start()
    finally:
        await process.aclose()


@contextlib.contextmanager
def small_disk(path: Path, size: str = "16m") -> Iterator[Path]:
    """A tmpfs of `size` at `path` (root only; the test is skipped elsewhere)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root needed): {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def fill(disk: Path) -> Path:
    """Fill `disk` to the last byte with one file; delete the file to free it again."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for size in (1 << 20, 65_536, 4_096, 1):  # unbuffered, down to the last byte
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


class Proxy:
    """A TCP proxy in front of a server on 127.0.0.1, which can go silent or cut a frame.

    `silence()`: connections open now stop passing bytes (both ways) but stay open; new ones
    work. `cut_next()`: the next server chunk of at least `min_bytes` on a WebSocket is
    forwarded only in part, then the connection is aborted: a frame cut in the middle.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._silenced: set[asyncio.StreamWriter] = set()
        self._live: set[asyncio.StreamWriter] = set()
        self._websockets: set[asyncio.StreamWriter] = set()  # the cut applies to these only
        self._cut_min: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def silence(self) -> None:
        self._silenced |= self._live

    def cut_next(self, min_bytes: int = 200) -> None:
        self._cut_min = min_bytes

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._live):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            self._tasks.discard(task)
            return
        self._live.add(writer)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, writer, upstream=False),
                self._pump(up_reader, writer, writer, upstream=True),
            )
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._live.discard(writer)
            self._silenced.discard(writer)
            self._websockets.discard(writer)
            for w in (writer, up_writer):
                w.transport.abort()
            self._tasks.discard(task)

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
        *,
        upstream: bool,
    ) -> None:
        while data := await source.read(65_536):
            if client in self._silenced:
                continue  # swallowed: the peer hears nothing
            if not upstream and b"websocket" in data[:4096].lower():
                self._websockets.add(client)
            cut = self._cut_min is not None and len(data) >= self._cut_min
            if upstream and cut and client in self._websockets:
                self._cut_min = None
                self.cuts += 1
                sink.write(data[: len(data) // 2])
                await sink.drain()
                raise OSError("cut mid-frame")
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()


async def subscribed(sim: Any, count: int = 1) -> None:
    """Wait until `count` clients have subscribed to the simulator's mempool in total."""

    def enough(s: Any) -> bool:
        return sum("track-mempool" in m for m in s.client_messages) >= count

    async with asyncio.timeout(30):
        await sim.wait_until(enough)


Check = Callable[[], Awaitable[bool]]


def has_whales(exporter: ExporterProcess, txids: list[str]) -> Check:
    """A `wait_for` condition: the API lists every one of `txids`."""

    async def check() -> bool:
        response = await exporter.get("/api/v1/whales", limit=1000)
        if response.status_code != 200:
            return False
        return set(txids) <= {row["txid"] for row in response.json()["whales"]}

    return check


def detected(exporter: ExporterProcess, count: int) -> Check:
    """A `wait_for` condition: at least `count` whales detected (stored or not)."""

    async def check() -> bool:
        total = 0.0
        for flow in ("inflow", "outflow", "internal", "unknown"):
            total += await exporter.metric("whale_transactions_total", flow=flow) or 0
        return total >= count

    return check


def is_ready(exporter: ExporterProcess) -> Check:
    """A `wait_for` condition: /readyz answers 200."""

    async def check() -> bool:
        return (await exporter.get("/readyz")).status_code == 200

    return check


async def send_whales(sim: Any, n: int, btc: float = 200) -> list[str]:
    """`n` whales into the simulator's mempool, announced in one poll; returns their txids."""
    txs = [sim_whale(sim, btc + i) for i in range(n)]
    for tx in txs:
        sim.add(tx)
    await sim.flush()
    return [tx["txid"] for tx in txs]


async def wait_stored(
    exporter: ExporterProcess, txids: list[str], timeout: float = 60, what: str = "every whale"
) -> None:
    """Wait until the API lists every one of `txids`; on failure show the exporter's log."""
    await wait_for(has_whales(exporter, txids), timeout, f"{what} stored", lambda: exporter.log)
