"""What the notifier hands to a destination: one message, and the alerts it speaks for.

Pure values. A message is a single alert, a digest of folded alerts, or an Alertmanager page.
`Fold` gathers alerts into one digest with bounded memory: it keeps the first `keep` notices
for the digest's lines and counts the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from apprise import NotifyType

from exporter.notify.rules import Notice, NoticeKind

MAX_FOLDED = 200  # notices a digest lists; the rest are counted ("… and N more")
DIGEST = "digest"
RELAY = "alertmanager"
NOTIFY_TYPE = {
    NoticeKind.NEW: NotifyType.INFO,
    NoticeKind.CONFIRMED: NotifyType.SUCCESS,
    NoticeKind.REPLACED: NotifyType.WARNING,
    NoticeKind.DROPPED: NotifyType.WARNING,
    NoticeKind.EXPIRED: NotifyType.WARNING,
    NoticeKind.CORRECTED: NotifyType.INFO,
}
Item = tuple[str | None, str | None]  # (chain_id, txid) a message speaks of


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for the destinations of one tag.

    `kind` is a NoticeKind value, "digest" or "alertmanager"; `notices` are the alerts it
    speaks for (all of a single alert, the kept part of a digest), `count` how many alerts
    that is in all, and `created_at` when it was first queued.
    """

    tag: str
    kind: str
    title: str
    body: str
    notify_type: NotifyType = NotifyType.INFO
    notices: tuple[Notice, ...] = ()
    count: int = 1
    created_at: float = 0.0
    reason: str = ""  # of a digest: rate_limit, overflow or outage

    @property
    def items(self) -> tuple[Item, ...]:
        """(chain_id, txid) of each alert listed, for the delivery records."""
        return tuple((n.signal.chain_id, n.signal.txid) for n in self.notices)

    @property
    def is_digest(self) -> bool:
        return self.kind == DIGEST


@dataclass(slots=True)
class Fold:
    """Alerts folded into one digest: the first `keep` notices kept, every alert counted."""

    keep: int = MAX_FOLDED
    notices: list[Notice] = field(default_factory=list)
    count: int = 0
    first: Outgoing | None = None  # the only message folded, while there is just one

    def add(self, out: Outgoing) -> None:
        self.first = out if self.count == 0 else None
        self.count += out.count
        room = self.keep - len(self.notices)
        if room > 0:
            self.notices.extend(out.notices[:room])

    def __bool__(self) -> bool:
        return self.count > 0

    def take(self) -> tuple[list[Notice], int, Outgoing | None]:
        """Empty the fold: (notices kept, alerts counted, the message when it was one alone)."""
        taken = (self.notices, self.count, self.first)
        self.notices, self.count, self.first = [], 0, None
        return taken
