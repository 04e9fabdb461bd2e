"""Wiring and lifecycle: start-up, serve, shutdown.

Start-up opens the store (migrating it), restores pending whales, binds the HTTP socket and
starts the long-lived tasks under one TaskGroup. Shutdown stops the stream, drains the frame
queue, flushes the store, stops the notifier and closes HTTP, within a deadline.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry

from exporter.config import Settings, env_name, flag
from exporter.core.addresses import AddressBook
from exporter.core.models import Event
from exporter.errors import ConfigError, StoreUnavailable
from exporter.metrics import Metrics
from exporter.notify.notifier import Notifier
from exporter.pipeline import Notifies, Pipeline
from exporter.shell.budget import Budget
from exporter.shell.esplora import Esplora
from exporter.shell.http import ApiState, relay_served, webconfig, whale_json
from exporter.shell.http.auth import Tokens
from exporter.shell.http.middleware import Access
from exporter.shell.http.server import WebServer
from exporter.shell.http.sse import Broker
from exporter.shell.instrument import ObservedTransport, watch_loop_lag
from exporter.shell.rest import MempoolRest
from exporter.shell.store import Store
from exporter.shell.stream import StreamClient, StreamOptions, backoff_schedule

log = logging.getLogger(__name__)
SHUTDOWN_DEADLINE = 4.0
REFRESH_SECONDS = 30.0
RETENTION_SECONDS = 86_400.0
JOURNAL_LOAD_SECONDS = 1.0


class _Fanout:
    """Hands each pipeline event to the notifier and to the live stream."""

    def __init__(self, *targets: Notifies) -> None:
        self.targets = targets

    def submit(self, event: Event) -> None:
        for target in self.targets:
            target.submit(event)


def bind(settings: Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"{flag('listen')} / {env_name('listen')}: cannot listen on {settings.listen}: "
            f"{exc.strerror}"
        ) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def every(seconds: float, job: Callable[[], Awaitable[Any]], *, first: float = 0.0) -> None:
    """Run `job` forever at a fixed interval; one failure is logged, never fatal."""
    await asyncio.sleep(first)
    while True:
        try:
            await job()
        except StoreUnavailable:
            pass  # the store logs each change of its state once; the job runs again later
        except Exception:
            log.exception("periodic %s failed", getattr(job, "__name__", "job"))
        await asyncio.sleep(seconds)


async def run(
    settings: Settings,
    book: AddressBook,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[int], None] | None = None,
    backoff: Callable[[int], float] | None = None,
    registry: CollectorRegistry | None = None,
    handle_signals: bool = True,
) -> None:
    """Run the exporter until `stop` is set (or SIGINT/SIGTERM arrive)."""
    stop = stop or asyncio.Event()
    web = webconfig.load(settings.web_config_file)  # a broken file stops the start (exit 2)
    registry = registry or CollectorRegistry()
    metrics = Metrics(registry, threshold_btc=settings.threshold_btc)
    store = Store(settings.db, metrics)
    notifier = Notifier(
        settings, metrics, store, whale_json=lambda signal: whale_json(signal, settings)
    )
    notifier.load()  # a bad destination or rules file: one line, before anything else happens
    try:
        await store.open()
    except Exception as exc:
        raise ConfigError(
            f"{flag('db')} / {env_name('db')}: cannot open {settings.db}: {exc}"
        ) from None
    sock = None
    rest = MempoolRest(
        settings.rest_url,
        timeout=settings.rest_timeout,
        concurrency=settings.rest_concurrency,
        transport=ObservedTransport.http(
            metrics.observe_rest, max_connections=settings.rest_concurrency
        ),
        budget=Budget(settings.rest_rate),
    )
    esplora = (
        None
        if settings.esplora_url is None
        else Esplora(
            settings.esplora_url,
            transport=ObservedTransport.http(metrics.observe_rest, max_connections=100),
        )
    )
    try:
        sock = bind(settings)
        await notifier.start()
        broker = Broker(settings, store, metrics)
        await broker.start()
        fanout = _Fanout(notifier, broker)
        pipeline = Pipeline(settings, metrics, store, rest, book, notifier=fanout, esplora=esplora)
        await pipeline.restore()
        await _serve(settings, metrics, registry, store, pipeline, notifier, broker, web, sock,
                     stop, on_ready, backoff, handle_signals)  # fmt: skip
    finally:
        await notifier.close(timeout=0)  # a no-op after _serve's; else frees the webhook client
        await rest.aclose()
        if esplora is not None:
            await esplora.aclose()
        await store.close()
        if sock is not None:
            sock.close()


async def _serve(
    settings: Settings,
    metrics: Metrics,
    registry: CollectorRegistry,
    store: Store,
    pipeline: Pipeline,
    notifier: Notifier,
    broker: Broker,
    web: webconfig.WebConfig,
    sock: socket.socket,
    stop: asyncio.Event,
    on_ready: Callable[[int], None] | None,
    backoff: Callable[[int], float] | None,
    handle_signals: bool,
) -> None:
    def on_state(state: str) -> None:
        metrics.set_state(state)
        if state in ("reconnecting", "failed"):
            metrics.reconnects.inc()

    stream = StreamClient(
        StreamOptions(
            settings.ws_url,
            ping_interval=settings.ping_interval,
            stale_after=settings.stale_after,
            max_frame_bytes=settings.max_frame_mb * 2**20,
        ),
        pipeline.on_frame,
        on_state=on_state,
        on_connected=pipeline.on_connected,
        backoff=backoff
        or backoff_schedule(settings.reconnect_min_delay, settings.reconnect_max_delay),
    )

    pipeline.stream_up = lambda: stream.connected

    def since_frame() -> float | None:
        last = stream.last_frame_at
        return None if last is None else time.monotonic() - last

    tokens = [token.get_secret_value() for token in settings.api_tokens]
    access = Access(Tokens(tokens), relay_token=settings.alertmanager_token is not None)
    state = ApiState(
        settings=settings,
        registry=registry,
        metrics=metrics,
        store=store,
        access=access,
        broker=broker,
        stream_connected=lambda: stream.connected,
        seconds_since_frame=since_frame,
        accuracy=pipeline.accuracy.snapshot,
        relay=notifier.relay,
        started_at=time.time(),
    )
    http = WebServer(settings, state, web, metrics)
    _warn_if_open(settings, access)
    loop = asyncio.get_running_loop()
    if handle_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, http.reload)
    tick = settings.check_interval
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(http.serve(sock))
            delivery = group.create_task(notifier.run())
            consumer = group.create_task(pipeline.consume())
            background = [
                group.create_task(stream.run()),
                group.create_task(broker.run()),
                group.create_task(pipeline.resync_loop()),
                group.create_task(pipeline.audit.loop()),
                group.create_task(every(tick, pipeline.tick, first=tick)),
                group.create_task(every(REFRESH_SECONDS, pipeline.refresh_from_rest)),
                group.create_task(every(RETENTION_SECONDS, pipeline.retention)),
                group.create_task(every(JOURNAL_LOAD_SECONDS, store.retry)),
                group.create_task(watch_loop_lag(metrics.loop_lag.observe)),
            ]
            gc.freeze()  # start-up objects need no more collecting: shorter GC pauses
            # The socket is already listening: early requests wait in its backlog.
            port = sock.getsockname()[1]
            log.info(
                "serving on %s://%s:%d (metrics at /metrics)", http.scheme, settings.host, port
            )
            if on_ready is not None:
                on_ready(port)
            await stop.wait()
            log.info("shutting down")
            for task in background:
                task.cancel()
            try:
                async with asyncio.timeout(SHUTDOWN_DEADLINE):
                    await pipeline.queue.join()
                    consumer.cancel()
                    await pipeline.prevouts.aclose()
                    await pipeline.flush()
                    await broker.flush()
                    await notifier.close(timeout=1.5)
            except TimeoutError:
                log.warning("shutdown deadline passed; cancelling what is left")
            consumer.cancel()
            delivery.cancel()
            broker.close()  # ends the live streams, so uvicorn need not wait for them
            http.stop()
    finally:
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)


def _warn_if_open(settings: Settings, access: Access) -> None:
    """One line for each thing a stranger could use, said once at start."""
    if not relay_served(settings):
        log.warning(
            "POST /alertmanager is off (404): %s is not a loopback address and %s / %s is not set",
            settings.listen, flag("alertmanager_token"), env_name("alertmanager_token"),
        )  # fmt: skip
    if not settings.loopback and not access.tokens and not access.basic:
        log.warning(
            "the whale API on %s is open to anyone who can reach it: set %s / %s "
            "or basic_auth_users in %s",
            settings.listen, flag("api_tokens"), env_name("api_tokens"),
            flag("web_config_file"),
        )  # fmt: skip
