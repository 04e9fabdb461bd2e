"""The outbox's messages survive the round trip through their saved JSON."""

from __future__ import annotations

import pytest
from apprise import NotifyType
from support import make_signal

from exporter.core.models import Status
from exporter.notify import outbox
from exporter.notify.outgoing import DIGEST, Outgoing
from exporter.notify.rules import Notice, NoticeKind


def test_a_digest_comes_back_with_its_whales_count_and_type() -> None:
    """Title, body, type, count, reason and each whale's full row are kept, so a webhook body
    built from the whales after a restart is the one the last run would have sent."""
    whales = (
        Notice(NoticeKind.NEW, make_signal("a" * 64, 150.0)),
        Notice(NoticeKind.CONFIRMED, make_signal("b" * 64, 900.5, status=Status.CONFIRMED), "h"),
    )
    out = Outgoing("traders", DIGEST, "🐋 5 alerts", "body", NotifyType.WARNING, whales, 5, 12.5,
                   "outage")  # fmt: skip
    back = outbox.decode(outbox.encode(out))
    assert back == out
    assert back.notices[1].signal.status is Status.CONFIRMED


@pytest.mark.parametrize("text", ["not json", "{}", '{"notices": [{"kind": "nope"}]}'])
def test_a_broken_entry_is_an_error_not_a_message(text: str) -> None:
    """What cannot be read back raises one of the errors the notifier skips with a warning."""
    with pytest.raises((ValueError, KeyError, TypeError)):
        outbox.decode(text)
