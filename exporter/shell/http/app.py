"""HTTP: /metrics, health, the whale API, its live stream and the Alertmanager relay.

Handlers only read in-memory state or run store queries on reader threads; a scrape never
touches DuckDB. Query parameters are validated by pydantic; a bad one gets 422 naming it.
Every request passes the gate first (middleware.py): credentials, limits, headers.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from exporter import __version__
from exporter.config import Settings
from exporter.errors import StoreUnavailable
from exporter.metrics import Metrics
from exporter.notify.alertmanager import authorized
from exporter.shell.http import openapi
from exporter.shell.http.answers import (
    ORJSONResponse,
    SummaryParams,
    WhaleParams,
    invalid,
    whale_json,
)
from exporter.shell.http.middleware import Access, Gate
from exporter.shell.http.ratelimit import RateLimiter
from exporter.shell.http.sse import Broker, last_event_id
from exporter.shell.store import Store

TXID = re.compile(r"[0-9a-f]{64}")
MAX_RELAY_BYTES = 1_000_000


def _params(request: Request) -> dict[str, str]:
    # A repeated parameter is ambiguous; the last one wins, as in most HTTP frameworks.
    return dict(request.query_params)


@dataclass
class ApiState:
    """What the handlers read; owned by the app."""

    settings: Settings
    registry: CollectorRegistry
    metrics: Metrics
    store: Store
    access: Access
    broker: Broker
    stream_connected: Callable[[], bool]
    seconds_since_frame: Callable[[], float | None]
    accuracy: Callable[[], Mapping[str, tuple[float | None, int]]]
    relay: Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]] | None = None
    started_at: float = 0.0


def relay_served(settings: Settings) -> bool:
    """POST /alertmanager sends messages: only with a token, or on a loopback address."""
    return settings.alertmanager_token is not None or settings.loopback


def build_app(state: ApiState) -> ASGIApp:
    settings = state.settings

    async def metrics(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(state.registry), media_type=content_type)

    async def healthz(request: Request) -> Response:
        return ORJSONResponse({"status": "ok", "uptime_seconds": time.time() - state.started_at})

    async def readyz(request: Request) -> Response:
        reasons = []
        if not state.store.is_open:
            reasons.append("database is not open")
        elif (problem := state.store.problem) is not None:
            reasons.append(f"store cannot write: {problem}")
        silent = state.seconds_since_frame()
        recently = silent is not None and silent <= settings.stale_after
        if not state.stream_connected() and not recently:
            reasons.append("stream is not connected and has not been healthy recently")
        if reasons:
            return ORJSONResponse({"ready": False, "reasons": reasons}, status_code=503)
        return ORJSONResponse({"ready": True})

    async def index(request: Request) -> Response:
        links = [
            ("/metrics", "Prometheus metrics"),
            ("/api/v1/whales", "Recent whales (JSON)"),
            ("/api/v1/summary", "Summary of the last 24 hours (JSON)"),
            ("/api/v1/whales/stream", "Live whale events (Server-Sent Events)"),
            ("/api/v1/openapi.json", "OpenAPI document"),
            ("/healthz", "Liveness"),
            ("/readyz", "Readiness"),
        ]
        items = "".join(
            f'<li><a href="{href}">{html.escape(text)}</a></li>' for href, text in links
        )
        body = (
            "<!doctype html><html><head><meta charset='utf-8'><title>mempool-whale-exporter</title>"
            f"</head><body><h1>mempool-whale-exporter {__version__}</h1>"
            f"<p>Watching {html.escape(settings.mempool_url)} for transactions of "
            f"{settings.threshold_btc:g} BTC or more.</p><ul>{items}</ul></body></html>"
        )
        return HTMLResponse(body)

    async def whales(request: Request) -> Response:
        try:
            params = WhaleParams.model_validate(_params(request))
        except ValidationError as exc:
            return invalid(exc)
        rows = await state.store.whales(params.query())
        return ORJSONResponse(
            {"whales": [whale_json(s, settings) for s in rows], "count": len(rows)}
        )

    async def whale(request: Request) -> Response:
        txid = request.path_params["txid"]
        if not TXID.fullmatch(txid):
            return ORJSONResponse(
                {"error": "invalid parameters", "details": [{"parameter": "txid",
                 "error": "must be 64 lowercase hex characters"}]},
                status_code=422,
            )  # fmt: skip
        signal = await state.store.get(txid)
        if signal is None:
            return ORJSONResponse({"error": "unknown txid"}, status_code=404)
        body = whale_json(signal, settings)
        body["chain"] = signal.chain
        body["block_hash"] = signal.block_hash
        return ORJSONResponse(body)

    async def summary(request: Request) -> Response:
        try:
            params = SummaryParams.model_validate(_params(request))
        except ValidationError as exc:
            return invalid(exc)
        since = time.time() - params.hours * 3600
        body = await state.store.summary(since)
        body["hours"] = params.hours
        body["accuracy"] = {
            window: {"ratio": ratio, "outcomes": count}
            for window, (ratio, count) in state.accuracy().items()
        }
        return ORJSONResponse(body)

    async def alertmanager(request: Request) -> Response:
        if not authorized(request.headers.get("authorization"), settings.alertmanager_token):
            return ORJSONResponse({"error": "unauthorized"}, status_code=401)
        if state.relay is None:
            return ORJSONResponse({"error": "no notifier configured"}, status_code=503)
        body = await request.body()
        if len(body) > MAX_RELAY_BYTES:
            return ORJSONResponse({"error": "payload too large"}, status_code=413)
        try:
            payload = orjson.loads(body)
            if not isinstance(payload, dict):
                raise ValueError("payload must be a JSON object")
            result = await state.relay(payload)
        except (orjson.JSONDecodeError, ValueError) as exc:
            return ORJSONResponse({"error": f"invalid payload: {exc}"}, status_code=422)
        return ORJSONResponse(result)

    async def unavailable(request: Request, exc: Exception) -> Response:
        # A sick disk is a 503 with the reason, never a 500: the client may retry later.
        return ORJSONResponse(
            {"error": "store unavailable", "reason": str(exc)},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    async def stream(request: Request) -> Response:
        last = last_event_id(request.headers.get("last-event-id"))
        return StreamingResponse(
            state.broker.stream(last),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    async def openapi_json(request: Request) -> Response:
        access = state.access
        body = openapi.document(
            tokens=bool(access.tokens),
            basic=bool(access.basic),
            relay=relay_served(settings),
            relay_token=access.relay_token,
        )
        return ORJSONResponse(body)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return ORJSONResponse(
            {"error": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    routes = [
        Route("/", index),
        Route("/metrics", metrics),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/api/v1/openapi.json", openapi_json),
        Route("/api/v1/whales", whales),
        Route("/api/v1/whales/stream", stream),
        Route("/api/v1/whales/{txid}", whale),
        Route("/api/v1/summary", summary),
    ]
    if relay_served(settings):
        routes.append(Route("/alertmanager", alertmanager, methods=["POST"]))
    app = Starlette(
        routes=routes, exception_handlers={HTTPException: refused, StoreUnavailable: unavailable}
    )
    limiter = RateLimiter(settings.api_rate_limit, settings.api_rate_burst)
    return Gate(app, state.access, limiter, state.metrics, timeout=settings.http_timeout)
