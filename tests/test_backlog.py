"""The pure backlog of one destination: the oldest folds, never the newest; outages digest."""

from __future__ import annotations

from support import make_signal

from exporter.notify.backlog import Backlog
from exporter.notify.outgoing import Outgoing
from exporter.notify.rules import Notice, NoticeKind


def link(txid: str) -> str:
    return f"https://mempool.example/tx/{txid}"


def alert(n: int) -> Outgoing:
    notice = Notice(NoticeKind.NEW, make_signal(f"{n:064x}", 500))
    return Outgoing("default", "new", f"whale {n}", "body", notices=(notice,), created_at=n)


def txids(out: Outgoing | None) -> list[int]:
    assert out is not None
    return [int(txid or "", 16) for _, txid in out.items]


def test_a_full_queue_folds_the_oldest_and_keeps_the_newest() -> None:
    """Past `size`, the oldest alerts fold into a digest sent last; the newest stay queued."""
    backlog = Backlog("default", 3, link)
    folded = [backlog.push(alert(n)) for n in range(1, 7)]
    assert folded == [0, 0, 0, 1, 1, 1]
    assert len(backlog) == 4  # three queued and one digest
    sent = [backlog.next(now=10.0)[0] for _ in range(4)]
    assert [txids(out) for out in sent[:3]] == [[4], [5], [6]]
    digest = sent[3]
    assert digest is not None and digest.reason == "overflow"
    assert txids(digest) == [1, 2, 3] and digest.count == 3
    assert backlog.next(now=11.0) == (None, 0)


def test_while_down_everything_held_goes_out_as_one_outage_digest() -> None:
    """After a failure, the failed alert and all queued since go out as one digest."""
    backlog = Backlog("default", 100, link)
    backlog.push(alert(1))
    first, _ = backlog.next(now=0.0)
    assert first is not None
    backlog.failed(first, now=1.0)
    for n in range(2, 6):
        backlog.push(alert(n))
    probe, folded = backlog.next(now=2.0)
    assert folded == 4
    assert probe is not None and probe.reason == "outage" and probe.count == 5
    assert probe.title == "🐋 5 whale alerts while the destination was down"
    assert txids(probe) == [1, 2, 3, 4, 5]
    assert backlog.down_since == 1.0


def test_a_failed_probe_is_held_again_with_its_count() -> None:
    """A digest that fails is folded back: the next probe counts its alerts and the new ones."""
    backlog = Backlog("default", 100, link)
    for n in range(1, 4):
        backlog.push(alert(n))
    first, _ = backlog.next(now=0.0)
    assert first is not None
    backlog.failed(first, now=0.0)
    probe, _ = backlog.next(now=1.0)
    assert probe is not None and probe.count == 3
    backlog.failed(probe, now=1.0)
    backlog.push(alert(4))
    again, _ = backlog.next(now=2.0)
    assert again is not None and again.count == 4 and txids(again) == [1, 2, 3, 4]


def test_a_single_held_alert_is_sent_as_itself() -> None:
    """When only one alert was held, the probe is that alert, not a digest of one."""
    backlog = Backlog("default", 100, link)
    backlog.push(alert(1))
    first, _ = backlog.next(now=0.0)
    assert first is not None
    backlog.failed(first, now=0.0)
    probe, _ = backlog.next(now=1.0)
    assert probe is first


def test_after_recovery_new_alerts_go_out_one_by_one() -> None:
    """Once a probe gets through, the destination is up and each new alert is its own message."""
    backlog = Backlog("default", 100, link)
    backlog.push(alert(1))
    first, _ = backlog.next(now=0.0)
    assert first is not None
    backlog.failed(first, now=0.0)
    backlog.push(alert(2))
    probe, _ = backlog.next(now=1.0)
    assert probe is not None and probe.count == 2
    backlog.delivered()
    assert not backlog.down
    backlog.push(alert(3))
    backlog.push(alert(4))
    assert [txids(backlog.next(now=2.0)[0]) for _ in range(2)] == [[3], [4]]


def test_a_huge_outage_keeps_bounded_lines_and_counts_everything() -> None:
    """A digest lists at most `keep` alerts but counts every one, so memory stays bounded."""
    backlog = Backlog("default", 5, link, keep=10)
    backlog.push(alert(0))
    first, _ = backlog.next(now=0.0)
    assert first is not None
    backlog.failed(first, now=0.0)
    for n in range(1, 1000):
        backlog.push(alert(n))
    probe, _ = backlog.next(now=1.0)
    assert probe is not None and probe.count == 1000
    assert len(probe.notices) == 10
    assert "… and 990 more" in probe.body
