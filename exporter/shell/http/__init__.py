"""The HTTP server: routes (app), the gate (middleware), credentials (auth, webconfig), rate
limits, the live whale stream (sse), the OpenAPI document and uvicorn's protocol (protocol)."""

from exporter.shell.http.answers import iso, whale_json
from exporter.shell.http.app import ApiState, build_app, relay_served

__all__ = ["ApiState", "build_app", "iso", "relay_served", "whale_json"]
