"""The router: which destination hears about which event, and when. Pure.

    event ─> notice ─> per tag: rule ─> dedup ─> rate window ─> Send(message, destinations)
                                                     └─ over the limit: folded, and sent as
                                                        one digest when the window ends

Values in, decisions out: the caller passes `now`, stores the dedup keys it is handed
(`Decision.claims`), counts `Decision.suppressed` and performs the sends. No event loop, no
clock, no I/O; tests drive it with a fake clock. Dedup keys are kept as long as the store keeps
them (`keep` seconds, the retention) and forgotten after, and at most `max_keys` of them (the
oldest go first), so memory stays bounded even under a flood of whales.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from apprise import NotifyType

from exporter.core.models import Event
from exporter.notify import message
from exporter.notify.outgoing import DIGEST, NOTIFY_TYPE, Fold, Outgoing
from exporter.notify.rules import Notice, NoticeKind, Rules, Verdict, decide, dedup_key, notice_for

Link = Callable[[str], str]
PRUNE_EVERY = 3600.0  # seconds between sweeps of the dedup keys past retention
MAX_KEYS = 500_000  # ~75 MB; a few keys per whale, so months at the real ~1,600 whales a day


@dataclass(frozen=True, slots=True)
class Send:
    """Deliver `out` to each destination named."""

    out: Outgoing
    destinations: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Claim:
    """A dedup key to persist: this notice was routed to this tag."""

    key: str
    chain_id: str
    kind: str
    at: float


@dataclass(slots=True)
class Decision:
    sends: list[Send] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    suppressed: dict[str, int] = field(default_factory=dict)  # reason -> alerts

    def suppress(self, reason: str) -> None:
        self.suppressed[reason] = self.suppressed.get(reason, 0) + 1


@dataclass(slots=True)
class _Window:
    """The rate window of one tag: alerts sent, then alerts folded into its digest."""

    start: float
    sent: int = 0
    fold: Fold = field(default_factory=Fold)
    destinations: list[str] = field(default_factory=list)


class Router:
    """Routes events to destinations by tag.

    `routes` maps each tag to its destination names; a destination with several tags hears
    about an event once. `limit` alerts per tag per `window` seconds go out one by one; the
    rest are folded into one digest per tag, due when the window ends.
    """

    def __init__(
        self,
        rules: Rules,
        routes: Mapping[str, Sequence[str]],
        *,
        link: Link,
        limit: int,
        window: float = 60.0,
        keep: float = 90 * 86_400.0,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.rules = rules
        self.routes = {tag: tuple(names) for tag, names in sorted(routes.items())}
        self._link = link
        self._limit = limit
        self._window = window
        self._keep = keep
        self._max_keys = max_keys
        self._keys: dict[str, float] = {}  # dedup key -> claimed at, oldest first
        self._swept = float("-inf")
        self._windows: dict[str, _Window] = {}

    # -- dedup keys -------------------------------------------------------------------------

    def load(self, keys: Iterable[tuple[str, float]], now: float) -> None:
        """Take the persisted keys (key, claimed at), oldest first; drop those past retention."""
        for key, at in keys:
            self._keys[key] = at
        self.forget(now)
        self._bound()

    def _bound(self) -> None:
        """Past `max_keys`, forget the oldest: at worst a very old whale is told about again."""
        while len(self._keys) > self._max_keys:
            del self._keys[next(iter(self._keys))]

    def forget(self, now: float) -> int:
        """Forget the keys claimed more than `keep` seconds before `now`; returns how many."""
        cutoff = now - self._keep
        old = [key for key, at in self._keys.items() if at < cutoff]
        for key in old:
            del self._keys[key]
        self._swept = now
        return len(old)

    @property
    def key_count(self) -> int:
        return len(self._keys)

    def _claimed(self, key: str) -> bool:
        return key in self._keys

    # -- routing ----------------------------------------------------------------------------

    def route(self, event: Event, now: float) -> Decision:
        """Decide what `event` calls for at `now`."""
        decision = Decision()
        if now - self._swept >= PRUNE_EVERY:
            self.forget(now)
        decision.sends.extend(self.due(now))
        notice = notice_for(event)
        if notice is None:
            return decision
        signal = notice.signal
        reached: set[str] = set()
        rendered: message.Message | None = None
        for tag, names in self.routes.items():
            new_sent = self._claimed(dedup_key(tag, NoticeKind.NEW, signal.chain_id))
            verdict = decide(self.rules.rule(tag), notice, new_was_sent=new_sent)
            if verdict is Verdict.SKIP:
                continue
            if verdict is Verdict.FILTER:
                decision.suppress("filter")
                continue
            if self._is_duplicate(tag, notice):
                decision.suppress("dedup")
                continue
            key = dedup_key(tag, notice.kind, signal.chain_id, notice.key)
            self._keys[key] = now
            self._bound()
            decision.claims.append(Claim(key, signal.chain_id, notice.kind.value, now))
            targets = [name for name in names if name not in reached]
            reached.update(targets)
            if not targets:
                continue
            if rendered is None:
                rendered = message.render(notice, self._link)
            out = Outgoing(
                tag,
                notice.kind.value,
                rendered.title,
                rendered.body,
                NOTIFY_TYPE[notice.kind],
                (notice,),
                created_at=now,
            )
            self._limit_rate(out, targets, now, decision)
        return decision

    def _is_duplicate(self, tag: str, notice: Notice) -> bool:
        signal = notice.signal
        if notice.kind is NoticeKind.NEW:
            # A replacement is never a second new whale: any member of the chain counts.
            return any(
                self._claimed(dedup_key(tag, NoticeKind.NEW, txid))
                for txid in {signal.chain_id, signal.txid, *signal.chain}
            )
        return self._claimed(dedup_key(tag, notice.kind, signal.chain_id, notice.key))

    def _limit_rate(self, out: Outgoing, targets: list[str], now: float, into: Decision) -> None:
        window = self._windows.get(out.tag)
        if window is None or now >= window.start + self._window:
            if window is not None:
                into.sends.extend(self._flush(out.tag, window, now))
            window = self._windows[out.tag] = _Window(now)
        if window.sent < self._limit:
            window.sent += 1
            into.sends.append(Send(out, tuple(targets)))
            return
        into.suppress("rate_limit")
        window.fold.add(out)
        window.destinations += [name for name in targets if name not in window.destinations]

    # -- digests ----------------------------------------------------------------------------

    def next_due(self) -> float | None:
        """When the earliest digest falls due, or None when nothing is folded."""
        ends = [w.start + self._window for w in self._windows.values() if w.fold]
        return min(ends, default=None)

    def due(self, now: float) -> list[Send]:
        """The digests whose window has ended by `now`."""
        sends: list[Send] = []
        for tag, window in list(self._windows.items()):
            if now >= window.start + self._window:
                sends += self._flush(tag, window, now)
                del self._windows[tag]
        return sends

    def flush(self, now: float) -> list[Send]:
        """Every digest folded so far, due or not (at shutdown)."""
        sends: list[Send] = []
        for tag, window in self._windows.items():
            sends += self._flush(tag, window, now)
        return sends

    def _flush(self, tag: str, window: _Window, now: float) -> list[Send]:
        if not window.fold:
            return []
        notices, count, _ = window.fold.take()
        lines = [message.line(notice, self._link) for notice in notices]
        text = message.digest(lines, limit=self._limit, window=self._window, count=count)
        out = Outgoing(
            tag, DIGEST, text.title, text.body, NotifyType.INFO, tuple(notices), count, now,
            "rate_limit",
        )  # fmt: skip
        destinations, window.destinations = tuple(window.destinations), []
        return [Send(out, destinations)]
