"""HTTP: /metrics, health, the whale API and the Alertmanager relay (Starlette).

Handlers only read in-memory state or run store queries on reader threads; a scrape never
touches DuckDB. Query parameters are validated by pydantic; a bad one gets 422 naming it.
"""

from __future__ import annotations

import html
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from exporter import __version__
from exporter.config import Settings
from exporter.core.models import Flow, Signal, Status
from exporter.errors import StoreUnavailable
from exporter.notify.alertmanager import authorized
from exporter.shell.store import Store, WhaleQuery

TXID = re.compile(r"[0-9a-f]{64}")
MAX_RELAY_BYTES = 1_000_000


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def whale_json(signal: Signal, settings: Settings) -> dict[str, Any]:
    return {
        "txid": signal.txid,
        "chain_id": signal.chain_id,
        "first_seen": iso(signal.first_seen),
        "detected_at": iso(signal.detected_at),
        "value_btc": signal.value_sats / 1e8,
        "gross_btc": signal.gross_sats / 1e8,
        "value_usd": signal.value_usd,
        "fee_sats": signal.fee_sats,
        "vsize": signal.vsize,
        "fee_rate": signal.fee_rate,
        "effective_fee_rate": signal.effective_fee_rate,
        "flow": signal.flow.value,
        "entity": signal.entity,
        "status": signal.status.value,
        "outcome": signal.outcome.value if signal.outcome else None,
        "urgency_score": signal.urgency_score,
        "urgency_level": signal.urgency_level.value,
        "urgency_fallback": signal.urgency_fallback,
        "predicted_blocks": signal.predicted_blocks,
        "predicted_height": signal.predicted_height,
        "tip_height": signal.tip_height,
        "bip125": signal.bip125,
        "replacements": len(signal.chain) - 1,
        "replaced_out": signal.replaced_out,
        "resolved_at": iso(signal.resolved_at),
        "block_height": signal.block_height,
        "confirmation_blocks": signal.confirmation_blocks,
        "prediction_hit": signal.hit,
        "backfilled": signal.backfilled,
        "seen_in_mempool": signal.seen_in_mempool,
        "value_is_gross": signal.value_is_gross,
        "explorer_url": settings.explorer_tx_url(signal.txid),
    }


class WhaleParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: int = Field(100, ge=1, le=1000)
    since: datetime | None = None
    flow: Flow | None = None
    min_btc: float | None = Field(None, ge=0, le=21_000_000)
    status: Status | None = None
    outcome: Literal["confirmed", "replaced", "dropped", "expired"] | None = None
    min_urgency: float | None = Field(None, ge=0, le=1)
    rbf: bool | None = None

    @field_validator("min_btc", "min_urgency")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    def query(self) -> WhaleQuery:
        since = self.since
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return WhaleQuery(
            limit=self.limit,
            since=since.timestamp() if since else None,
            flow=self.flow,
            min_btc=self.min_btc,
            status=self.status,
            outcome=Status(self.outcome) if self.outcome else None,
            min_urgency=self.min_urgency,
            rbf=self.rbf,
        )


class SummaryParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    hours: float = Field(24, gt=0, le=24 * 90)


def _invalid(exc: ValidationError) -> ORJSONResponse:
    errors = [
        {"parameter": ".".join(str(p) for p in e["loc"]) or "query", "error": e["msg"]}
        for e in exc.errors()
    ]
    return ORJSONResponse({"error": "invalid parameters", "details": errors}, status_code=422)


def _params(request: Request) -> dict[str, str]:
    # A repeated parameter is ambiguous; the last one wins, as in most HTTP frameworks.
    return dict(request.query_params)


@dataclass
class ApiState:
    """What the handlers read; owned by the app."""

    settings: Settings
    registry: CollectorRegistry
    store: Store
    stream_connected: Callable[[], bool]
    seconds_since_frame: Callable[[], float | None]
    accuracy: Callable[[], Mapping[str, tuple[float | None, int]]]
    relay: Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]] | None = None
    started_at: float = 0.0


def build_app(state: ApiState) -> Starlette:
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
            return _invalid(exc)
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
            return _invalid(exc)
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

    return Starlette(
        exception_handlers={StoreUnavailable: unavailable},
        routes=[
            Route("/", index),
            Route("/metrics", metrics),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/api/v1/whales", whales),
            Route("/api/v1/whales/{txid}", whale),
            Route("/api/v1/summary", summary),
            Route("/alertmanager", alertmanager, methods=["POST"]),
        ],
    )
