"""A tiny local JSON-webhook receiver for the demo and the tests.

    python -m exporter.sim.receiver --port 8025

then point the exporter at it with `--apprise-url json://127.0.0.1:8025/whales`. Every
notification Apprise posts is printed. One request per connection, HTTP/1.1, no dependencies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

MAX_BODY = 1 << 20
Responder = Callable[["Request"], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    payload: Any = field(default=None)  # the decoded JSON body, when it is JSON


async def accept(request: Request) -> int:
    return 200


class Receiver:
    """An HTTP server on `host:port` (port 0 picks a free one) that records what it gets.

    `respond(request)` returns the status code to answer with; it may wait (a hanging
    receiver). `received` lists every complete request, in order.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        respond: Responder = accept,
        on_request: Callable[[Request], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.respond = respond
        self.on_request = on_request
        self.received: list[Request] = []
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Condition()

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Receiver:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def url(self, path: str = "/whales", scheme: str = "json") -> str:
        return f"{scheme}://{self.host}:{self.port}{path}"

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Request]:  # noqa: ASYNC109
        """Wait until `count` requests have arrived; TimeoutError otherwise."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.received) >= count)
        return self.received

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            request = await _read(reader)
            if request is None:
                return
            async with self._changed:
                self.received.append(request)
                self._changed.notify_all()
            if self.on_request is not None:
                self.on_request(request)
            status = await self.respond(request)
            reply = b'{"ok":true}' if status < 400 else b'{"ok":false}'
            writer.write(
                f"HTTP/1.1 {status} {'OK' if status < 400 else 'Error'}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(reply)}\r\nConnection: close\r\n\r\n".encode()
                + reply
            )
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def _read(reader: asyncio.StreamReader) -> Request | None:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) < 2:
        return None
    headers: dict[str, str] = {}
    for text in lines[1:]:
        name, sep, value = text.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length") or 0)
    if length > MAX_BODY:
        raise ValueError("body too large")
    body = await reader.readexactly(length) if length else b""
    payload: Any = None
    if body:
        with contextlib.suppress(ValueError):
            payload = json.loads(body)
    return Request(parts[0], parts[1], headers, body, payload)


def show(request: Request) -> None:
    """Print one Apprise JSON notification (or any other body) to stdout."""
    payload = request.payload
    if isinstance(payload, dict) and "message" in payload:
        kind = str(payload.get("type", "info")).upper()
        print(f"── [{kind}] {payload.get('title') or '(no title)'}  ({request.path})")
        print(str(payload.get("message", "")).rstrip())
    else:
        print(f"── {request.method} {request.path}")
        print(request.body.decode("utf-8", "replace").rstrip())
    print(flush=True)


async def serve(host: str, port: int) -> None:
    receiver = await Receiver(host, port, on_request=show).start()
    print(
        f"listening on http://{host}:{receiver.port}/ — "
        f"use --apprise-url json://{host}:{receiver.port}/whales",
        flush=True,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await receiver.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m exporter.sim.receiver", description="Print JSON webhook notifications."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
