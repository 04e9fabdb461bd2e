"""The live whale stream: Server-Sent Events at GET /api/v1/whales/stream.

    pipeline --submit(event)--> Broker --offer--> one bounded queue per client --> response
                                  \\--> DuckDB `events` (batched, off the loop)

`submit` never waits: it numbers the event, hands it to every client's queue and to the
batch waiting for the store. A client whose queue is full has fallen behind: it is cut off
(`whale_sse_dropped_clients_total`) and reconnects with `Last-Event-ID`, which replays what it
missed from DuckDB (and from the batch not yet written) before going live, without a gap or a
repeat: the client subscribes first, replays, then skips live events it has already had.

Event ids grow across restarts: the first id of a run is above both the last stored id and
the start time in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import orjson

from exporter.config import Settings
from exporter.core.models import Event, EventKind
from exporter.errors import StoreUnavailable
from exporter.metrics import Metrics
from exporter.shell.http.answers import whale_json
from exporter.shell.store import Store

log = logging.getLogger(__name__)
KINDS = {
    EventKind.DETECTED: "whale",
    EventKind.REPLACED: "update",
    EventKind.RESOLVED: "outcome",
    EventKind.CORRECTED: "outcome",
}
QUEUE_SIZE = 1024  # events a client may lag behind before it is cut off (shared objects)
MAX_UNSAVED = 10_000  # events kept for the store while it cannot be written
PAGE = 500
FLUSH_SECONDS = 0.25


@dataclass(frozen=True, slots=True)
class StreamEvent:
    id: int
    kind: str
    data: str  # the signal's JSON

    def encode(self) -> bytes:
        return f"id: {self.id}\nevent: {self.kind}\ndata: {self.data}\n\n".encode()


@dataclass(eq=False)
class Subscriber:
    queue: asyncio.Queue[StreamEvent] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    dropped: asyncio.Event = field(default_factory=asyncio.Event)


class Broker:
    """Numbers events, fans them out to clients and persists them; `submit` never waits."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self._next = 0
        self._subscribers: set[Subscriber] = set()
        self._unsaved: list[tuple[int, float, str, str, str]] = []
        self._pending = asyncio.Event()
        self.closed = asyncio.Event()

    async def start(self) -> None:
        last = await self.store.last_event_id()
        self._next = max(last + 1, int(self.clock() * 1000))

    def submit(self, event: Event) -> None:
        kind = KINDS.get(event.kind)
        if kind is None:
            return
        item = StreamEvent(
            self._next, kind, orjson.dumps(whale_json(event.signal, self.settings)).decode()
        )
        self._next += 1
        self._unsaved.append((item.id, self.clock(), kind, event.signal.chain_id, item.data))
        if len(self._unsaved) > MAX_UNSAVED:  # the store is gone: keep the newest
            del self._unsaved[0]
        self._pending.set()
        for subscriber in list(self._subscribers):
            try:
                subscriber.queue.put_nowait(item)
            except asyncio.QueueFull:
                self._drop(subscriber)

    def _drop(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)
        subscriber.dropped.set()
        self.metrics.sse_dropped.inc()

    async def run(self) -> None:
        """Write numbered events to the store in batches; a failed batch is retried."""
        while True:
            await self._pending.wait()
            await asyncio.sleep(FLUSH_SECONDS)  # gather a batch
            self._pending.clear()
            try:
                await self.flush()
            except StoreUnavailable:  # the store logs its state once; retried
                self._pending.set()
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("saving %d stream events failed; retried", len(self._unsaved))
                self._pending.set()
                await asyncio.sleep(1.0)

    async def flush(self) -> None:
        batch = list(self._unsaved)
        if batch:
            await self.store.save_events(batch)
            # Only now do they leave the buffer: a replay reads the buffer, then the store.
            saved = batch[-1][0]
            self._unsaved = [row for row in self._unsaved if row[0] > saved]

    def close(self) -> None:
        """End every stream (at shutdown)."""
        self.closed.set()
        for subscriber in list(self._subscribers):
            self._subscribers.discard(subscriber)
            subscriber.dropped.set()

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Subscriber]:
        subscriber = Subscriber()
        self._subscribers.add(subscriber)
        self.metrics.sse_clients.inc()
        try:
            yield subscriber
        finally:
            self._subscribers.discard(subscriber)
            self.metrics.sse_clients.dec()

    async def replay(self, after: int) -> AsyncIterator[StreamEvent]:
        """Events after id `after`: the store page by page, then the batch not yet written."""
        buffered = [StreamEvent(i, kind, data) for i, _, kind, _, data in self._unsaved]
        while True:
            rows = await self.store.events_after(after, PAGE)
            for event_id, kind, data in rows:
                yield StreamEvent(event_id, kind, data)
                after = event_id
            if len(rows) < PAGE:
                break
        for item in buffered:
            if item.id > after:
                yield item
                after = item.id

    async def stream(self, last_id: int | None) -> AsyncIterator[bytes]:
        """The body of one client's response."""
        heartbeat = self.settings.sse_heartbeat
        with self.subscribe() as subscriber:
            yield f"retry: 2000\n: connected, heartbeat every {heartbeat:g} s\n\n".encode()
            sent = -1
            if last_id is not None:
                sent = min(last_id, self._next - 1)  # an id from the future replays nothing
                last_id = sent
                async for item in self.replay(last_id):
                    yield item.encode()
                    self.metrics.sse_events.inc()
                    sent = item.id
            while not subscriber.dropped.is_set():
                try:
                    async with asyncio.timeout(heartbeat):
                        live = await _first(subscriber)
                except TimeoutError:
                    yield b": heartbeat\n\n"
                    continue
                if live is None:
                    break
                if live.id > sent:
                    yield live.encode()
                    self.metrics.sse_events.inc()
                    sent = live.id


async def _first(subscriber: Subscriber) -> StreamEvent | None:
    """The next queued event, or None once the client is cut off."""
    if not subscriber.queue.empty():
        return subscriber.queue.get_nowait()
    getter = asyncio.ensure_future(subscriber.queue.get())
    dropped = asyncio.ensure_future(subscriber.dropped.wait())
    try:
        done, _ = await asyncio.wait({getter, dropped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        getter.cancel()
        dropped.cancel()
    if getter in done and not getter.cancelled():
        return getter.result()
    return None


def last_event_id(header: str | None) -> int | None:
    """The `Last-Event-ID` header as an id; anything else starts a live-only stream."""
    if header is None or not header.strip().isdigit() or len(header.strip()) > 18:
        return None
    return int(header.strip())
