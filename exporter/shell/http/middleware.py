"""The gate every request passes: headers, size and time limits, credentials, rate limits.

A pure ASGI middleware, so it sees a request before routing and a response's every write:

- the web config's `http_server_config.headers` go on every answer, refusals included;
- a body over 1 MiB gets 413; a request body slower than `--http-timeout` gets 408 (counted as
  `slow_client`; stalled writes are the protocol's business, protocol.py);
- `/api/v1/*` takes a bearer token when `--api-token` is set (401 otherwise) and is rate limited
  per token, or per client address without one (429 with Retry-After);
- every other route, and the API without tokens, takes the web config's basic-auth users when
  there are any. `/alertmanager` with `--alertmanager-token` checks that token instead, since a
  request carries one Authorization header.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

import orjson
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exporter.metrics import Metrics
from exporter.shell.http.auth import BasicAuth, Tokens
from exporter.shell.http.ratelimit import RateLimiter
from exporter.shell.http.webconfig import WebConfig

MAX_BODY_BYTES = 1 << 20
API_PREFIX = "/api/v1/"
REALM = 'realm="mempool-whale-exporter"'


@dataclass
class Access:
    """Who may in: replaced as a whole when the web config is reloaded."""

    tokens: Tokens
    relay_token: bool
    basic: BasicAuth = field(default_factory=lambda: BasicAuth({}))
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def apply(self, config: WebConfig) -> None:
        self.basic = BasicAuth(config.users)
        self.headers = [(k.lower().encode(), v.encode()) for k, v in config.headers.items()]


class Gate:
    def __init__(
        self,
        app: ASGIApp,
        access: Access,
        limiter: RateLimiter,
        metrics: Metrics,
        *,
        timeout: float,
    ) -> None:
        self.app = app
        self.access = access
        self.limiter = limiter
        self.metrics = metrics
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.access.headers

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and extra:
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        refusal = await self._refusal(scope)
        if refusal is not None:
            await _answer(with_headers, *refusal)
            return
        await self.app(scope, self._receiving(receive), with_headers)

    async def _refusal(self, scope: Scope) -> tuple[int, str, dict[str, str]] | None:
        """Status, message and headers of a refusal, or None to let the request through."""
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            self.metrics.http_rejected.labels("body_too_large").inc()
            return 413, "request body over 1 MiB", {}
        path: str = scope["path"]
        access = self.access
        api = path.startswith(API_PREFIX)
        authorization = headers.get("authorization")
        own_token = (api and access.tokens) or (path == "/alertmanager" and access.relay_token)
        if not own_token and access.basic and not await access.basic.check(authorization):
            self.metrics.http_rejected.labels("unauthorized").inc()
            return 401, "unauthorized", {"www-authenticate": f"Basic {REALM}"}
        if not api:
            return None
        token = access.tokens.match(authorization) if access.tokens else None
        client = scope.get("client")
        wait = self.limiter.take(token or f"address {client[0] if client else '?'}")
        if wait > 0:
            self.metrics.http_rejected.labels("rate_limited").inc()
            return 429, "rate limit exceeded", {"retry-after": str(max(1, math.ceil(wait)))}
        if access.tokens and token is None:
            self.metrics.http_rejected.labels("unauthorized").inc()
            return 401, "unauthorized", {"www-authenticate": f"Bearer {REALM}"}
        return None

    def _receiving(self, receive: Receive) -> Receive:
        seen = 0
        complete = False

        async def guarded_receive() -> Message:
            nonlocal seen, complete
            if complete:  # the body is in; what is left is waiting for a disconnect
                return await receive()
            # Raised inside the handler: Starlette turns these into answers.
            try:
                async with asyncio.timeout(self.timeout):
                    message = await receive()
            except TimeoutError:
                self.metrics.http_rejected.labels("slow_client").inc()
                raise HTTPException(408, "request body too slow") from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > MAX_BODY_BYTES:
                    self.metrics.http_rejected.labels("body_too_large").inc()
                    raise HTTPException(413, "request body over 1 MiB")
                complete = not message.get("more_body", False)
            return message

        return guarded_receive


async def _answer(
    send: Send, status: int, error: str, headers: dict[str, str] | None = None
) -> None:
    body = orjson.dumps({"error": error})
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
