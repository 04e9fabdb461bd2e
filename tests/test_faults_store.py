"""Store faults on real files: poison rows, torn journal lines, a full disk, reads meanwhile."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import orjson
import pytest
from faults import fill, small_disk
from prometheus_client import CollectorRegistry
from support import make_signal, txid

from exporter.errors import StoreUnavailable
from exporter.metrics import Metrics
from exporter.shell.journal import Journal
from exporter.shell.store import Store, WhaleQuery


def counter(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None, name
    return value


async def test_a_poison_row_is_refused_alone_kept_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A row a column cannot hold is set aside; the rows around it are stored, now and later."""
    metrics = Metrics(CollectorRegistry(), process=False)
    store = Store(tmp_path / "w.duckdb", metrics)
    await store.open()
    try:
        poison = make_signal(txid(), 300, predicted_height=2**40, predicted_blocks=2**40)
        good = [make_signal(txid(), 200), make_signal(txid(), 250)]
        with caplog.at_level(logging.ERROR):
            await store.save([good[0], poison])
            await store.save([poison, good[1]])  # the poison row comes again with an update
        stored = {s.txid for s in await store.whales(WhaleQuery())}
        assert stored == {good[0].txid, good[1].txid}
        assert counter(metrics, "whale_store_rejected_rows_total") == 2
        assert sum(poison.txid in r.getMessage() for r in caplog.records) == 1
        kept = [orjson.loads(line) for line in store.rejected_path.read_bytes().splitlines()]
        assert [row["chain_id"] for row in kept] == [poison.txid, poison.txid]
        assert kept[0]["predicted_height"] == 2**40
        assert store.problem is None and counter(metrics, "whale_store_healthy") == 1
    finally:
        await store.close()


def test_a_torn_journal_write_costs_no_later_line(tmp_path: Path) -> None:
    """After a write the full disk tore, the next append starts on a line of its own."""
    with small_disk(tmp_path / "disk", "1m") as disk:
        journal = Journal(disk / "w.duckdb")
        journal.open()
        journal.append(b'{"n": 1}\n')
        filler = fill(disk)
        os.truncate(filler, filler.stat().st_size - 4096)  # room for part of the next batch
        with pytest.raises(OSError):
            journal.append(b"".join(b'{"n": %d, "pad": "%s"}\n' % (n, b"x" * 200)
                                    for n in range(2, 100)))  # fmt: skip
        filler.unlink()
        journal.append(b'{"n": 100}\n')
        journal.close()
        lines = journal.path.read_bytes().splitlines()
        assert [orjson.loads(line)["n"] for line in lines] == [1, 100]


async def test_torn_lines_left_by_a_crash_are_counted_and_kept(tmp_path: Path) -> None:
    """A line torn by a crash is skipped at the next start, counted, kept, and costs no other."""
    whale = make_signal(txid(), 300)
    writer = Store(tmp_path / "a.duckdb")
    await writer.open()
    await writer.save([whale])
    good_line = writer._journal.path.read_bytes()  # what the journal holds
    await writer.close()
    torn = orjson.dumps({"seq": 1, "chain_id": txid()})[:-7]
    db = tmp_path / "b.duckdb"
    db.with_name(db.name + ".journal").write_bytes(good_line + torn)  # the crash's leftover
    metrics = Metrics(CollectorRegistry(), process=False)
    again = Store(db, metrics)
    await again.open()
    try:
        assert [s.txid for s in await again.whales(WhaleQuery())] == [whale.txid]
        assert counter(metrics, "whale_journal_skipped_lines_total") == 1
        assert again.rejected_path.read_bytes().strip() == torn
    finally:
        await again.close()


async def test_a_full_disk_keeps_rows_in_memory_and_writes_them_later(tmp_path: Path) -> None:
    """While the disk is full, saves succeed into the backlog and reads answer; then all land."""
    with small_disk(tmp_path / "disk", "4m") as disk:
        metrics = Metrics(CollectorRegistry(), process=False)
        store = Store(disk / "w.duckdb", metrics)
        await store.open()
        try:
            before = make_signal(txid(), 200)
            await store.save([before])
            assert await store.sync()
            filler = fill(disk)
            during = [make_signal(txid(), 200 + n) for n in range(20)]
            for signal in during:
                await store.save([signal])
            assert store.problem is not None and "No space left" in store.problem
            assert counter(metrics, "whale_store_healthy") == 0
            assert store.backlog == len(during)
            # Reads still answer from what is loaded.
            assert [s.txid for s in await store.whales(WhaleQuery())] == [before.txid]
            filler.unlink()
            assert await store.flush(force=True)
            assert await store.sync(force=True)
            stored = {s.txid for s in await store.whales(WhaleQuery(limit=100))}
            assert stored == {before.txid} | {s.txid for s in during}
            assert store.problem is None and counter(metrics, "whale_store_healthy") == 1
            assert counter(metrics, "whale_store_backlog_rows") == 0
        finally:
            await store.close()


async def test_a_read_of_a_closed_store_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    """A read the database cannot answer raises StoreUnavailable (the API's 503), nothing else."""
    store = Store(tmp_path / "w.duckdb")
    with pytest.raises(StoreUnavailable):
        await store.whales(WhaleQuery())
    await store.close()


async def test_a_long_outage_keeps_the_newest_rows_and_counts_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory stays bounded through a long outage: the oldest rows go first, and are counted."""
    monkeypatch.setattr("exporter.shell.store.MAX_BACKLOG", 5)
    with small_disk(tmp_path / "disk", "4m") as disk:
        metrics = Metrics(CollectorRegistry(), process=False)
        store = Store(disk / "w.duckdb", metrics)
        await store.open()
        try:
            filler = fill(disk)
            signals = [make_signal(txid(), 200 + n) for n in range(8)]
            for signal in signals:
                await store.save([signal])
            assert store.backlog == 5
            assert counter(metrics, "whale_store_dropped_rows_total") == 3
            filler.unlink()
            assert await store.flush(force=True) and await store.sync(force=True)
            stored = {s.txid for s in await store.whales(WhaleQuery())}
            assert stored == {s.txid for s in signals[3:]}
        finally:
            await store.close()


async def test_after_a_failed_load_both_files_are_loaded_at_once(tmp_path: Path) -> None:
    """A load that failed leaves its file behind; the next load takes it and what came after."""
    store = Store(tmp_path / "w.duckdb")
    await store.open()
    try:
        first, second = make_signal(txid(), 200), make_signal(txid(), 300)
        await store.save([first])
        store._journal.sealed()  # sealed, then its load failed: the file stays
        await store.save([second])  # appended to the next journal meanwhile
        assert await store.sync(force=True)
        stored = {s.txid for s in await store.whales(WhaleQuery())}
        assert stored == {first.txid, second.txid}
    finally:
        await store.close()
