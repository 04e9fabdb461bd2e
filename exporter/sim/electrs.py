"""A self-hosted electrs's REST port for the simulator: a second loopback listener.

mempool/electrs serves esplora's routes without the ``/api`` prefix and its ``/internal/...``
bulk routes, one of which is a POST; websockets' HTTP handling only takes GETs, so this port is
a small Starlette app under uvicorn. The answers come from `exporter.sim.rest.answer_electrs`
through the ``serve`` callable the socket shell passes in.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Iterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from exporter.sim.rest import Reply, text

MAX_BODY = 2_000_000  # a POST of 10,000 txids is about 670 kB

Serve = Callable[[str, str, str, bytes], Awaitable[Reply]]


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the simulator's owner handles signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ElectrsServer:
    """Serves ``serve(method, path, query, body)`` on its own port until `stop`."""

    def __init__(self, serve: Serve) -> None:
        self._serve = serve
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.url = ""

    async def _endpoint(self, request: Request) -> Response:
        length = request.headers.get("content-length", "0")
        if not length.isdigit() or int(length) > MAX_BODY:
            reply = text(413, "Payload Too Large")
        else:
            body = await request.body()
            reply = await self._serve(request.method, request.url.path, request.url.query, body)
        return Response(
            reply.body, reply.status, headers=dict(reply.headers), media_type=reply.content_type
        )

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on host:port (0 picks a free port)."""
        app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=["GET", "POST"])])
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", server_header=False,
            timeout_graceful_shutdown=2,
        )  # fmt: skip
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="sim-electrs")
        bound = f"[{host}]" if ":" in host else host
        self.url = f"http://{bound}:{sock.getsockname()[1]}"

    async def stop(self) -> None:
        """Stop serving; safe to call twice."""
        server, task = self._server, self._task
        self._server = self._task = None
        if server is not None and task is not None:
            server.should_exit = True
            await task
