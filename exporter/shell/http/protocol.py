"""uvicorn's HTTP/1.1 protocol with deadlines for idle, slow and stalled connections.

uvicorn times out an idle keep-alive connection only after a first response, and closes it
gracefully, which waits for unsent data to drain. So a client that connects and sends nothing,
sends its headers a byte at a time, or stops reading a response holds its connection (and the
unsent bytes) for ever. Here every connection gets `timeout_keep_alive` seconds to deliver a
complete request head, at its start and again after each response, and a write that stays
paused (the client's window and our buffer full) that long aborts the connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


class DeadlineH11Protocol(H11Protocol):
    on_stalled: Callable[[], None] = staticmethod(lambda: None)  # a write was given up

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._write_deadline: asyncio.TimerHandle | None = None
        self._waiting_cycle: object = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self._head_deadline is not None and self.cycle is not self._waiting_cycle:
            self._disarm()  # a new request head arrived

    def on_response_complete(self) -> None:
        super().on_response_complete()
        idle = self.cycle is None or self.cycle.response_complete  # not a pipelined request
        if idle and not self.transport.is_closing():
            self._arm()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_deadline is None:
            self._write_deadline = self.loop.call_later(self.timeout_keep_alive, self._stalled)

    def resume_writing(self) -> None:
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None
        super().resume_writing()

    def _arm(self) -> None:
        self._disarm()
        self._waiting_cycle = self.cycle
        self._head_deadline = self.loop.call_later(self.timeout_keep_alive, self._expire)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _expire(self) -> None:
        self._head_deadline = None
        self.transport.abort()  # not close(): that would wait for unread bytes to drain

    def _stalled(self) -> None:
        self._write_deadline = None
        type(self).on_stalled()
        self.transport.abort()


def deadline_protocol(on_stalled: Callable[[], None]) -> type[DeadlineH11Protocol]:
    """The protocol class for one server, reporting stalled writes to `on_stalled`."""
    return type(
        "DeadlineH11Protocol", (DeadlineH11Protocol,), {"on_stalled": staticmethod(on_stalled)}
    )
