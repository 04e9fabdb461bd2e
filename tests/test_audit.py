"""Which blocks the block audit checks: new ones, ones mined while away, reorg replacements."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from exporter.shell.audit import BlockAudit


def block(height: int, tag: str = "a") -> dict[str, Any]:
    return {"height": height, "id": f"{tag}{height:063x}"[:64], "timestamp": 1_700_000_000}


def audit() -> BlockAudit:
    pipeline: Any = SimpleNamespace(settings=SimpleNamespace(audit=True))
    return BlockAudit(pipeline)


def queued(a: BlockAudit) -> list[int]:
    return [b.height for b in a._queue.values()]


def test_the_first_blocks_list_is_a_baseline_only() -> None:
    """Blocks mined before the exporter watched are not audited; the next new block is."""
    a = audit()
    a.saw_blocks([block(h) for h in range(100, 108)], new=False)
    assert queued(a) == []
    a.saw_blocks([block(108)], new=True)
    assert queued(a) == [108]


def test_blocks_mined_while_away_and_reorg_replacements_are_audited() -> None:
    """After a reconnect, blocks above the last height seen and new hashes at known heights
    are audited; blocks seen before, and stale ones, are not."""
    a = audit()
    a.saw_blocks([block(h) for h in range(100, 108)], new=False)
    again = [block(h) for h in range(102, 108)] + [block(108), block(109)]
    a.saw_blocks(again, new=False)
    assert queued(a) == [108, 109]
    a.saw_blocks([block(109, "b"), {**block(110), "stale": True}], new=False)
    assert queued(a) == [108, 109, 109]


def test_after_a_restart_the_blocks_mined_while_away_are_audited() -> None:
    """Resumed from the persisted blocks, the first list is audited above the last block seen,
    and the heights between it and the list are left for REST to find."""
    a = audit()
    a.resume([(h, block(h)["id"]) for h in range(90, 100)])
    a.saw_blocks([block(h) for h in range(100, 108)], new=False)
    assert queued(a) == list(range(100, 108))
    assert a._missing is None  # the list starts right above the last block seen
    b = audit()
    b.resume([(h, block(h)["id"]) for h in range(90, 100)])
    b.saw_blocks([block(h) for h in range(120, 128)], new=False)
    assert queued(b) == list(range(120, 128))
    assert b._missing == (100, 119)


def test_a_long_absence_audits_the_last_day_and_counts_the_rest() -> None:
    """Beyond CATCH_UP blocks below the first list, the older heights are counted as skipped."""
    from prometheus_client import CollectorRegistry

    from exporter.metrics import Metrics
    from exporter.shell.audit import CATCH_UP

    a = audit()
    registry = CollectorRegistry()
    a.p.metrics = Metrics(registry)
    a.resume([(100, block(100)["id"])])
    a.saw_blocks([block(h) for h in range(400, 408)], new=False)
    assert a._missing == (400 - CATCH_UP, 399)
    skipped = registry.get_sample_value("whale_audit_blocks_total", {"result": "skipped"})
    assert skipped == 400 - CATCH_UP - 101
