"""The outbox: alerts a destination has not taken at shutdown, carried over to the next start.

At shutdown each message still waiting for a destination (its queue, its held digest, a send
cut off) is saved under the destination's name with the rows of the whales it speaks for, so a
webhook's body is built again from the same whales, whatever the store holds by then. At the
next start the messages of destinations still
configured are held again and go out as one digest ("N whale alerts while the destination was
down") on the first send that gets through. Pure: values in, values out.
"""

from __future__ import annotations

from typing import Any

import orjson
from apprise import NotifyType

from exporter.notify.outgoing import Outgoing
from exporter.notify.rules import Notice, NoticeKind
from exporter.shell.store import row_of, signal_of


def encode(out: Outgoing) -> str:
    """One message as JSON, with the rows of the whales it speaks for."""
    notices = [{"kind": n.kind.value, "key": n.key, "row": row_of(n.signal)} for n in out.notices]
    return orjson.dumps(
        {
            "tag": out.tag, "kind": out.kind, "title": out.title, "body": out.body,
            "type": out.notify_type.value, "count": out.count, "created_at": out.created_at,
            "reason": out.reason, "notices": notices,
        }
    ).decode()  # fmt: skip


def decode(text: str) -> Outgoing:
    """The message `encode` saved; ValueError (or KeyError, TypeError) when it is not one."""
    data: dict[str, Any] = orjson.loads(text)
    notices = tuple(
        Notice(NoticeKind(n["kind"]), signal_of(n["row"]), str(n["key"])) for n in data["notices"]
    )
    return Outgoing(
        str(data["tag"]), str(data["kind"]), str(data["title"]), str(data["body"]),
        NotifyType(data["type"]), notices, max(int(data["count"]), len(notices)),
        float(data["created_at"]), str(data["reason"]),
    )  # fmt: skip
