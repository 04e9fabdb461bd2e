"""The simulator's socket shell: a websockets server on one loopback port serving the model.

A WebSocket upgrade is accepted on any path (clients use ``/api/v1/ws``); plain HTTP GETs are
answered from `exporter.sim.rest` through websockets' ``process_request``. Everything the
clients hear comes from the model as `Broadcast` values; this module only moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from exporter.sim import rest
from exporter.sim.electrs import ElectrsServer
from exporter.sim.model import Broadcast, MempoolModel
from exporter.sim.session import Session, encode
from exporter.sim.txmath import prices

log = logging.getLogger(__name__)

MAX_CLIENT_FRAME = 50_000
MAX_CLIENT_BUFFER = 10_000_000
MAX_LOG_ENTRIES = 10_000


@dataclass
class Fault:
    """An injected REST failure: a status (with ``Retry-After``), or a request that hangs.

    ``times`` limits how many requests it hits (None: until cleared).
    """

    status: int = 500
    retry_after: float | None = None
    times: int | None = None
    hang: bool = False


def route_key(method: str, path: str) -> str:
    """A request's route, e.g. ``/api/tx/:txid``, ``/api/v1/blocks/:height`` or
    ``POST /internal/mempool/txs``."""
    segments = [s for s in path.split("/") if s]
    named = [
        (":hash" if previous == "block" else ":txid")
        if _is_id(segment)
        else ":height"
        if previous == "blocks" and segment.isdigit()
        else segment
        for previous, segment in zip(["", *segments], segments, strict=False)
    ]
    route = "/" + "/".join(named)
    return route if method == "GET" else f"{method} {route}"


def _is_id(segment: str) -> bool:
    return len(segment) == 64 and all(c in "0123456789abcdefABCDEF" for c in segment)


@dataclass(eq=False)
class _Client:
    """One WebSocket connection: its session, its outgoing queue and its writer's state."""

    ws: ServerConnection
    session: Session = field(default_factory=Session)
    queue: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    buffered: int = 0
    dead: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)


def log_append(entries: list[Any], item: Any) -> None:
    """Append to a test-visible log, keeping it bounded."""
    entries.append(item)
    if len(entries) > 2 * MAX_LOG_ENTRIES:
        del entries[:-MAX_LOG_ENTRIES]


class MempoolServer:
    """Serves a `MempoolModel` over WebSocket and REST; records what clients did."""

    def __init__(self, model: MempoolModel, clock: Callable[[], float]) -> None:
        self.model = model
        self._clock = clock
        self.bare = False
        self.flapping = False
        self.rest_429 = 0
        self.rest_counts: Counter[str] = Counter()
        self.faults: dict[str, Fault] = {}
        self._release = asyncio.Event()
        self.electrs: ElectrsServer | None = None
        self.client_messages: list[dict[str, Any]] = []
        self.rest_requests: list[str] = []
        self.connection_count = 0
        self._clients: set[_Client] = set()
        self._server: Server | None = None
        self._host = "127.0.0.1"
        self._port = 0
        self._changed = asyncio.Event()

    # ---------------------------------------------------------------- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on host:port (0 picks a free port)."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._server = await serve(
            self._handle,
            host,
            port,
            process_request=self._process_request,
            max_size=MAX_CLIENT_FRAME,
            ping_interval=None,
            compression=None,
            open_timeout=None,  # an injected hang holds a REST request until released
            close_timeout=5,
            logger=logging.getLogger(f"{__name__}.ws"),
        )
        self._host = host
        self._port = int(next(iter(self._server.sockets)).getsockname()[1])

    async def start_electrs(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Open a self-hosted electrs's REST port (see `exporter.sim.electrs`); return its URL."""
        if self.electrs is None:
            self.electrs = ElectrsServer(self._serve_electrs)
            await self.electrs.start(host, port)
        return self.electrs.url

    async def stop(self) -> None:
        """Close every socket and the listeners; safe to call twice."""
        self.release_hangs()
        electrs, self.electrs = self.electrs, None
        if electrs is not None:
            await electrs.stop()
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    @property
    def port(self) -> int:
        """The bound TCP port (after ``start``)."""
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``; the socket is at ``/api/v1/ws``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    @property
    def connections(self) -> int:
        """WebSocket clients currently connected."""
        return len(self._clients)

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds, re-checked after every client or REST event."""
        while True:
            changed = self._changed
            if condition():
                return
            await changed.wait()

    def notify(self) -> None:
        """Wake `wait_until` callers."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def drop_connections(self) -> None:
        """Close every client WebSocket (1001) and wait until their handlers have ended."""
        clients = list(self._clients)
        await asyncio.gather(*(c.ws.close(1001, "dropped") for c in clients))
        for client in clients:
            client.queue.put_nowait("")  # wakes the writer so it notices
        await asyncio.gather(*(c.done.wait() for c in clients))

    # ---------------------------------------------------------------- sending

    def broadcast(self, event: Broadcast | None) -> None:
        """Send each client the parts of ``event`` it subscribed to."""
        if event is None:
            return
        for client in list(self._clients):
            frame = client.session.frame(event)
            if frame:
                self._send(client, frame)

    def _send(self, client: _Client, frame: Sequence[tuple[str, bytes]]) -> None:
        if client.dead:
            return
        body = b",".join(orjson.dumps(key) + b":" + value for key, value in frame)
        text = "{" + body.decode() + "}"
        client.buffered += len(text)
        if client.buffered > MAX_CLIENT_BUFFER:
            # The real backend terminates slow readers at the next send.
            client.dead = True
            client.ws.transport.abort()
            client.queue.put_nowait("")
            return
        client.queue.put_nowait(text)

    # ---------------------------------------------------------------- WebSocket

    async def _handle(self, ws: ServerConnection) -> None:
        if self.flapping:  # accepts, then goes away at once
            self.connection_count += 1
            self.notify()
            await ws.close(1001, "going away")
            return
        client = _Client(ws)
        self._clients.add(client)
        self.connection_count += 1
        self.notify()
        writer = asyncio.create_task(self._writer(client))
        try:
            model = self.model
            self._send(
                client,
                encode({"conversions": prices(model.usd, self._clock(), up=model.prices_up)}),
            )
            await self._reader(client)
        finally:
            self._clients.discard(client)
            client.dead = True
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            client.done.set()
            self.notify()

    async def _writer(self, client: _Client) -> None:
        with contextlib.suppress(ConnectionClosed):
            while not client.dead:
                text = await client.queue.get()
                if not text:
                    continue
                client.buffered -= len(text)
                await client.ws.send(text)

    async def _reader(self, client: _Client) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ConnectionClosed):
            async for raw in client.ws:
                received = client.session.receive(raw, self.model, self._clock(), loop.time())
                if received.message is not None:
                    log_append(self.client_messages, received.message)
                    self.notify()
                for reply in received.replies:
                    self._send(client, reply)
                if received.close is not None:
                    await client.ws.close(received.close.code, received.close.reason)
                    return

    # ---------------------------------------------------------------- REST

    def inject(self, route: str, fault: Fault) -> None:
        """Fail requests to ``route`` (a `route_key` or an exact path) with ``fault``."""
        self.faults[route] = fault

    def clear_faults(self) -> None:
        """Remove every injected fault and answer the requests left hanging."""
        self.faults.clear()
        self.release_hangs()

    def release_hangs(self) -> None:
        """Let hanging requests finish (with 503)."""
        self._release.set()
        self._release = asyncio.Event()

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        if "websocket" in request.headers.get("Upgrade", "").lower():
            return None
        parts = urlsplit(request.path)
        reply = await self._serve("GET", parts.path, parts.query, b"", electrs=False)
        return _response(reply)

    async def _serve_electrs(self, method: str, path: str, query: str, body: bytes) -> rest.Reply:
        return await self._serve(method, path, query, body, electrs=True)

    async def _serve(
        self, method: str, path: str, query: str, body: bytes, *, electrs: bool
    ) -> rest.Reply:
        """Count, apply faults, then answer from the model."""
        key = route_key(method, path)
        log_append(self.rest_requests, path)
        if key in self.rest_counts or len(self.rest_counts) < MAX_LOG_ENTRIES:
            self.rest_counts[key] += 1
        self.notify()
        if self.rest_429 > 0:
            self.rest_429 -= 1
            return rest.text(429, "Too Many Requests")
        fault = self.faults.get(path) or self.faults.get(key)
        if fault is not None:
            return await self._fail(path, key, fault)
        try:
            if electrs:
                return rest.answer_electrs(self.model, method, path, parse_qs(query), body)
            return rest.answer(self.model, path, parse_qs(query), self._clock(), bare=self.bare)
        except Exception:
            log.exception("simulator REST %s failed", path)
            return rest.text(500, "Internal Server Error")

    async def _fail(self, path: str, key: str, fault: Fault) -> rest.Reply:
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                self.faults.pop(path if path in self.faults else key, None)
        if fault.hang:
            await self._release.wait()
            return rest.text(503, "Service Unavailable")
        headers = () if fault.retry_after is None else (("Retry-After", f"{fault.retry_after:g}"),)
        return rest.text(fault.status, http.HTTPStatus(fault.status).phrase, headers)


def _response(reply: rest.Reply) -> Response:
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(reply.body))),
            ("Content-Type", reply.content_type),
            *reply.headers,
        ]
    )
    return Response(reply.status, http.HTTPStatus(reply.status).phrase, headers, reply.body)
