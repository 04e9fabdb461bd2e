"""uvicorn, configured from the settings and the web config, which SIGHUP reloads.

Limits: `--max-connections` caps connections and requests at once (more get 503), and every
connection gets `--http-timeout` seconds for each request head and stalled write (protocol.py)
and for its body (middleware.py), so idle and slow clients give their slot back.

A reload swaps the basic auth users and headers, and loads new certificates into the live TLS
context: connections made afterwards use them, open ones keep theirs. Turning TLS on or off
needs a restart.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import time
from collections.abc import Iterator

import uvicorn

from exporter.config import Settings
from exporter.errors import ConfigError
from exporter.metrics import Metrics
from exporter.shell.http import webconfig
from exporter.shell.http.app import ApiState, build_app
from exporter.shell.http.protocol import deadline_protocol
from exporter.shell.http.webconfig import WebConfig

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the app owns SIGINT, SIGTERM and SIGHUP."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebServer:
    def __init__(self, settings: Settings, state: ApiState, web: WebConfig, metrics: Metrics):
        self.settings = settings
        self.state = state
        self.metrics = metrics
        self.web = web
        config = uvicorn.Config(
            build_app(state),
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            http=deadline_protocol(metrics.http_rejected.labels("slow_client").inc),
            limit_concurrency=settings.max_connections,
            timeout_keep_alive=max(1, math.ceil(settings.http_timeout)),
            timeout_graceful_shutdown=2,
        )
        config.load()
        if web.tls is not None:
            config.ssl = webconfig.context(web.tls)
        self.config = config
        self.server = _Server(config)
        state.access.apply(web)
        self._loaded()

    @property
    def scheme(self) -> str:
        return "https" if self.config.ssl is not None else "http"

    async def serve(self, sock: socket.socket) -> None:
        await self.server.serve(sockets=[sock])

    def stop(self) -> None:
        self.server.should_exit = True

    def reload(self) -> bool:
        """Read the web config file again; a broken file keeps the running config."""
        path = self.settings.web_config_file
        if path is None:
            log.info("SIGHUP: no web config file to reload")
            return True
        try:
            web = webconfig.load(path)
        except ConfigError as exc:
            self.metrics.web_config_ok.set(0)
            log.error("web config reload failed, the running config stays: %s", exc)
            return False
        if (web.tls is None) != (self.config.ssl is None):
            log.warning("web config reload: turning TLS on or off takes a restart; TLS unchanged")
        elif web.tls is not None and self.config.ssl is not None:
            webconfig.context(web.tls, into=self.config.ssl)
        self.state.access.apply(web)
        self.web = web
        self._loaded()
        log.info("web config reloaded from %s", path)
        return True

    def _loaded(self) -> None:
        self.metrics.web_config_ok.set(1)
        self.metrics.web_config_at.set(time.time())
