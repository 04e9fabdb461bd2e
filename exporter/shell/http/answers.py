"""What the API answers: JSON rendering of a whale, and the validated query parameters."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.responses import JSONResponse

from exporter.config import Settings
from exporter.core.models import Flow, Signal, Status
from exporter.shell.store import WhaleQuery

DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


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
        "first_predicted_blocks": signal.first_predicted_blocks,
        "first_tip_height": signal.first_tip_height,
        "first_prediction_hit": signal.first_hit,
        "corrected_from": signal.corrected_from.value if signal.corrected_from else None,
        "backfilled": signal.backfilled,
        "seen_in_mempool": signal.seen_in_mempool,
        "value_is_gross": signal.value_is_gross,
        "explorer_url": settings.explorer_tx_url(signal.txid),
    }


class WhaleParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: int = Field(100, ge=1, le=1000)
    since: datetime | None = None
    until: datetime | None = None  # with since: the dashboard's time range
    flow: Flow | None = None
    min_btc: float | None = Field(None, ge=0, le=21_000_000)
    status: Status | None = None
    outcome: Literal["confirmed", "replaced", "dropped", "expired"] | None = None
    min_urgency: float | None = Field(None, ge=0, le=1)
    rbf: bool | None = None

    @field_validator("since", "until", mode="before")
    @classmethod
    def _date_time(cls, value: Any) -> Any:
        # pydantic would also take Unix seconds and bare dates; the API promises date-times.
        if isinstance(value, str) and not DATE_TIME.match(value):
            raise ValueError("must be an ISO 8601 date-time such as 2026-01-31T12:00:00Z")
        return value

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)  # no offset: UTC
        try:
            value.timestamp()
        except (OverflowError, ValueError, OSError):
            raise ValueError("is out of range") from None
        return value

    @field_validator("min_btc", "min_urgency")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    def query(self) -> WhaleQuery:
        since, until = self.since, self.until
        return WhaleQuery(
            limit=self.limit,
            since=since.timestamp() if since else None,
            until=until.timestamp() if until else None,
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


def invalid(exc: ValidationError) -> ORJSONResponse:
    errors = [
        {"parameter": ".".join(str(p) for p in e["loc"]) or "query", "error": e["msg"]}
        for e in exc.errors()
    ]
    return ORJSONResponse({"error": "invalid parameters", "details": errors}, status_code=422)
