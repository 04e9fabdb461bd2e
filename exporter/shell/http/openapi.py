"""The OpenAPI 3.1 document served at /api/v1/openapi.json.

Written out rather than derived, so it reads as the contract it is; the query parameters come
from the same pydantic models that validate them. tests/test_openapi.py runs schemathesis
against a live exporter: every answer must conform to this document.
"""

from __future__ import annotations

from typing import Any

from exporter import __version__
from exporter.core.models import Flow, Status, Urgency
from exporter.notify.alertmanager import MAX_ALERTS
from exporter.shell.http.answers import SummaryParams, WhaleParams

JSON = "application/json"


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


OBJECT = {"type": "object"}
_LABELS = {"type": ["object", "null"], "additionalProperties": {"type": "string"}}
_TEXT = {"type": ["string", "null"]}
_FIRING = {"type": "string", "enum": ["firing", "resolved"]}
WEBHOOK = {  # Alertmanager's webhook payload, version 4, as exporter.notify.alertmanager reads it
    "type": "object",
    "required": ["version", "status", "alerts"],
    "properties": {
        "version": {"type": ["string", "integer"], "enum": ["4", 4]},
        "status": _FIRING,
        "groupLabels": _LABELS,
        "commonLabels": _LABELS,
        "commonAnnotations": _LABELS,
        "externalURL": _TEXT,
        "receiver": _TEXT,
        "groupKey": _TEXT,
        "truncatedAlerts": {"type": "integer", "minimum": 0},
        "alerts": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_ALERTS,
            "items": {
                "type": "object",
                "required": ["status"],
                "properties": {
                    "status": _FIRING,
                    "labels": _LABELS,
                    "annotations": _LABELS,
                    "generatorURL": _TEXT,
                },
            },
        },
    },
}
TIME = {"type": "string", "format": "date-time"}
WHALE_FIELDS: dict[str, Any] = {
    "txid": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    "chain_id": {"type": "string", "description": "txid of the first member of the chain"},
    "first_seen": _nullable("string", format="date-time"),
    "detected_at": TIME,
    "value_btc": {"type": "number"},
    "gross_btc": {"type": "number"},
    "value_usd": _nullable("number"),
    "fee_sats": {"type": "integer"},
    "vsize": {"type": "number"},
    "fee_rate": {"type": "number"},
    "effective_fee_rate": {"type": "number"},
    "flow": {"type": "string", "enum": [f.value for f in Flow]},
    "entity": _nullable("string"),
    "status": {"type": "string", "enum": [s.value for s in Status]},
    "outcome": {"type": ["string", "null"], "enum": [*(s.value for s in Status), None]},
    "urgency_score": {"type": "number", "minimum": 0, "maximum": 1},
    "urgency_level": {"type": "string", "enum": [u.value for u in Urgency]},
    "urgency_fallback": {"type": "boolean"},
    "predicted_blocks": _nullable("integer"),
    "predicted_height": _nullable("integer"),
    "tip_height": _nullable("integer"),
    "bip125": {"type": "boolean"},
    "replacements": {"type": "integer", "minimum": 0},
    "replaced_out": {"type": "boolean"},
    "resolved_at": _nullable("string", format="date-time"),
    "block_height": _nullable("integer"),
    "confirmation_blocks": _nullable("integer"),
    "prediction_hit": _nullable("boolean"),
    "backfilled": {"type": "boolean"},
    "seen_in_mempool": {"type": "boolean"},
    "value_is_gross": {"type": "boolean"},
    "explorer_url": {"type": "string"},
}
SCHEMAS: dict[str, Any] = {
    "Whale": {
        "type": "object",
        "required": list(WHALE_FIELDS),
        "properties": WHALE_FIELDS,
    },
    "WhaleDetail": {
        "allOf": [
            {"$ref": "#/components/schemas/Whale"},
            {
                "type": "object",
                "required": ["chain", "block_hash"],
                "properties": {
                    "chain": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                    "block_hash": _nullable("string"),
                },
            },
        ]
    },
    "WhaleList": {
        "type": "object",
        "required": ["whales", "count"],
        "properties": {
            "whales": {"type": "array", "items": {"$ref": "#/components/schemas/Whale"}},
            "count": {"type": "integer", "minimum": 0},
        },
    },
    "Summary": {
        "type": "object",
        "required": [
            "whales",
            "volume_btc",
            "average_urgency",
            "by_flow",
            "outcomes",
            "hours",
            "accuracy",
        ],
        "properties": {
            "whales": {"type": "integer", "minimum": 0},
            "volume_btc": {"type": "number"},
            "average_urgency": _nullable("number"),
            "by_flow": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["whales", "volume_btc"],
                    "properties": {"whales": {"type": "integer"}, "volume_btc": {"type": "number"}},
                },
            },
            "outcomes": {"type": "object", "additionalProperties": {"type": "integer"}},
            "hours": {"type": "number"},
            "accuracy": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["ratio", "outcomes"],
                    "properties": {"ratio": _nullable("number"), "outcomes": {"type": "integer"}},
                },
            },
        },
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string"},
            "details": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["parameter", "error"],
                    "properties": {"parameter": {"type": "string"}, "error": {"type": "string"}},
                },
            },
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "uptime_seconds"],
        "properties": {"status": {"const": "ok"}, "uptime_seconds": {"type": "number"}},
    },
    "Ready": {
        "type": "object",
        "required": ["ready"],
        "properties": {
            "ready": {"type": "boolean"},
            "reasons": {"type": "array", "items": {"type": "string"}},
        },
    },
}


def _error(description: str, **headers: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _json(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _query(model: type[WhaleParams] | type[SummaryParams]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    parameters = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        prop.pop("title", None)
        if "anyOf" in prop:  # `X | None`: the parameter is optional, its value is X
            prop.update(next(p for p in prop.pop("anyOf") if p.get("type") != "null"))
            prop.pop("default", None)
        if "$ref" in prop:  # an enum
            prop.update(schema["$defs"][prop.pop("$ref").rsplit("/", 1)[1]])
            prop.pop("title", None)
        parameters.append({"name": name, "in": "query", "required": False, "schema": prop})
    return parameters


def document(*, tokens: bool, basic: bool, relay: bool, relay_token: bool) -> dict[str, Any]:
    """The document for this configuration: which credentials are asked, which routes exist."""
    api_security: list[dict[str, list[str]]] = (
        [{"bearer": []}] if tokens else ([{"basic": []}] if basic else [])
    )
    other_security: list[dict[str, list[str]]] = [{"basic": []}] if basic else []
    refusals: dict[str, Any] = {
        "429": _error(
            "Rate limit exceeded",
            **{"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
        )
    }
    if api_security:
        refusals["401"] = _error("Missing or wrong credentials")
    plain = {"401": _error("Missing or wrong credentials")} if basic else {}

    def api(summary: str, ok: dict[str, Any], **more: Any) -> dict[str, Any]:
        return {
            "get": {
                "summary": summary,
                "security": api_security,
                "responses": {"200": ok, **refusals, **more.pop("responses", {})},
                **more,
            }
        }

    def route(summary: str, ok: dict[str, Any], **answers: Any) -> dict[str, Any]:
        return {
            "get": {
                "summary": summary,
                "security": other_security,
                "responses": {"200": ok, **plain, **answers},
            }
        }

    invalid = {"422": _error("A parameter is invalid; `details` names it")}
    paths: dict[str, Any] = {
        "/": route("A page of links", {"description": "HTML", "content": {"text/html": {}}}),
        "/metrics": route(
            "Prometheus metrics",
            {"description": "Text exposition format", "content": {"text/plain": {}}},
        ),
        "/healthz": route("Liveness", _json("Alive", "Health")),
        "/readyz": route(
            "Readiness: the store is open and the stream is (or was lately) connected",
            _json("Ready", "Ready"),
            **{"503": _json("Not ready; `reasons` says why", "Ready")},
        ),
        "/api/v1/openapi.json": api(
            "This document", {"description": "OpenAPI 3.1", "content": {JSON: {}}}
        ),
        "/api/v1/whales": api(
            "Recent whales, newest first",
            _json("Whales", "WhaleList"),
            parameters=_query(WhaleParams),
            responses=invalid,
        ),
        "/api/v1/whales/stream": api(
            "Live whale events (Server-Sent Events: `whale`, `update`, `outcome`)",
            {
                "description": "An endless `text/event-stream`; each event has an `id` and "
                "the whale's JSON (schema Whale) as `data`",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            parameters=[
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "description": "Resume after this event id",
                    "schema": {"type": "string"},
                }
            ],
        ),
        "/api/v1/whales/{txid}": api(
            "One whale by any txid of its replacement chain",
            _json("The whale", "WhaleDetail"),
            parameters=[
                {
                    "name": "txid",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                }
            ],
            responses={**invalid, "404": _error("Unknown txid")},
        ),
        "/api/v1/summary": api(
            "Totals, flows, outcomes and prediction accuracy",
            _json("Summary", "Summary"),
            parameters=_query(SummaryParams),
            responses=invalid,
        ),
    }
    if relay:
        paths["/alertmanager"] = {
            "post": {
                "summary": "Relay an Alertmanager webhook (v4) to the on-call destinations",
                "security": [{"bearer": []}] if relay_token else other_security,
                "requestBody": {"required": True, "content": {JSON: {"schema": WEBHOOK}}},
                "responses": {
                    "200": {"description": "Relayed", "content": {JSON: {"schema": OBJECT}}},
                    "401": _error("Missing or wrong token"),
                    "413": _error("Body over 1 MiB"),
                    "422": _error("Not an Alertmanager webhook payload"),
                    "503": _error("No notifier configured"),
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mempool-whale-exporter",
            "version": __version__,
            "description": "Bitcoin mempool whales: JSON API, live stream, metrics and relay.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
            },
        },
    }
