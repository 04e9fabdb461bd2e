"""The backlog of one destination: a bounded queue that serves the present. Pure.

- Up: messages go out oldest first. When the queue is full, the oldest message is folded
  into a digest (never the newest refused); the digest goes out once the queue is empty.
- Down (a send failed after its retries): nothing is dropped. Whatever waits, and whatever
  arrives, is held; each probe offers all of it as one digest ("N whale alerts while the
  destination was down"), or the message itself when there is only one. The first probe
  that gets through brings the destination back up, and new alerts go out at once again.

Memory is bounded: `size` messages queued, and a digest keeps at most `keep` alerts' lines
while counting every alert.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from apprise import NotifyType

from exporter.notify import message
from exporter.notify.outgoing import DIGEST, MAX_FOLDED, Fold, Outgoing

Link = Callable[[str], str]


class Backlog:
    """Messages waiting for one destination; `tag` names its digests in the records."""

    def __init__(self, tag: str, size: int, link: Link, *, keep: int = MAX_FOLDED) -> None:
        self.tag = tag
        self.size = size
        self._link = link
        self._queue: deque[Outgoing] = deque()
        self._held = Fold(keep)
        self._overflowed = False  # what is held came from a full queue, not an outage
        self.down_since: float | None = None

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def __len__(self) -> int:
        """Messages waiting: those queued, and the held digest as one."""
        return len(self._queue) + (1 if self._held else 0)

    def push(self, out: Outgoing) -> int:
        """Queue `out`; returns how many alerts were folded to make room (the oldest)."""
        self._queue.append(out)
        folded = 0
        while len(self._queue) > self.size:
            oldest = self._queue.popleft()
            if not self._held:
                self._overflowed = not self.down
            self._held.add(oldest)
            folded += oldest.count
        return folded

    def next(self, now: float) -> tuple[Outgoing | None, int]:
        """The message to send now (None when there is none), and how many alerts were folded
        into it because the destination is down."""
        if self.down:
            folded = 0
            while self._queue:
                out = self._queue.popleft()
                self._held.add(out)
                folded += out.count
            return self._take(now, outage=True), folded
        if self._queue:
            return self._queue.popleft(), 0
        return self._take(now, outage=not self._overflowed), 0

    def failed(self, out: Outgoing, now: float) -> None:
        """`out` could not be delivered: the destination is down and `out` is held."""
        if self.down_since is None:
            self.down_since = now
        self.hold(out)

    def hold(self, out: Outgoing) -> None:
        """Hold `out` for the next digest (alerts carried over from the last run)."""
        self._held.add(out)
        self._overflowed = False

    def delivered(self) -> None:
        """A send got through: the destination is up."""
        self.down_since = None

    def drain(self, now: float) -> list[Outgoing]:
        """Everything still waiting (at shutdown): the queued messages, then the held digest."""
        left = list(self._queue)
        self._queue.clear()
        held = self._take(now, outage=self.down)
        return left if held is None else [*left, held]

    def _take(self, now: float, *, outage: bool) -> Outgoing | None:
        if not self._held:
            return None
        notices, count, alone = self._held.take()
        self._overflowed = False
        if alone is not None:
            return alone
        lines = [message.line(notice, self._link) for notice in notices]
        if outage:
            text = message.outage_digest(lines, count=count)
            reason = "outage"
        else:
            text = message.digest_of_overflow(lines, count=count)
            reason = "overflow"
        return Outgoing(
            self.tag, DIGEST, text.title, text.body, NotifyType.INFO, tuple(notices), count, now,
            reason,
        )  # fmt: skip
