"""A full disk under the real exporter process: readiness tells, reads answer, nothing is lost.

The database lives on a small tmpfs (root only; skipped elsewhere) that the test fills to the
last byte and frees again, while the simulator sends whales over loopback.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from faults import (
    detected,
    exporter_process,
    fill,
    is_ready,
    send_whales,
    small_disk,
    subscribed,
    wait_stored,
)
from support import wait_for

from exporter.sim.mempool import SimulatedMempool


def args(sim: SimulatedMempool, db: Path) -> list[str]:
    return ["--mempool-url", sim.url, "--db", str(db), "--no-backfill",
            "--stale-after", "5", "--ping-interval", "1"]  # fmt: skip


async def test_a_full_disk_is_visible_and_loses_no_whale(
    sim: SimulatedMempool, tmp_path: Path
) -> None:
    """While the disk is full, /readyz says why (503), reads never 500, one error line is logged;
    when it frees up, every whale detected meanwhile is stored."""
    with small_disk(tmp_path / "disk", "16m") as disk:
        async with exporter_process(*args(sim, disk / "w.duckdb")) as exporter:
            await subscribed(sim)
            before = await send_whales(sim, 1)
            await wait_stored(exporter, before, 15, "the first whale")
            filler = fill(disk)
            during: list[str] = []
            for _ in range(4):  # several batches, each refused
                during += await send_whales(sim, 2)
                await wait_for(detected(exporter, len(before) + len(during)), 15, "detection")
            ready = await exporter.get("/readyz")
            assert ready.status_code == 503
            assert "store cannot write" in ready.text and "No space left" in ready.text
            assert await exporter.metric("whale_store_healthy") == 0
            backlog = await exporter.metric("whale_store_backlog_rows")
            assert backlog is not None and backlog > 0
            reads = [await exporter.get("/api/v1/whales") for _ in range(3)]
            assert {r.status_code for r in reads} <= {200, 503}, [r.text for r in reads]
            assert (await exporter.get("/api/v1/summary")).status_code in (200, 503)
            filler.unlink()
            await wait_stored(exporter, before + during, 60, "every whale")
            await wait_for(is_ready(exporter), 30, "ready again")
            assert await exporter.metric("whale_store_healthy") == 1
            assert exporter.count("store cannot write") == 1, exporter.log
            assert exporter.count("store writes again") == 1, exporter.log
            assert exporter.count("Traceback") == 0, exporter.log
            assert await exporter.stop() == 0


async def test_short_full_disk_blips_lose_no_whale(sim: SimulatedMempool, tmp_path: Path) -> None:
    """Eight blips of a nearly full disk tear journal writes; no whale is lost or skipped."""
    rng = random.Random(8)
    with small_disk(tmp_path / "disk", "16m") as disk:
        async with exporter_process(*args(sim, disk / "w.duckdb")) as exporter:
            await subscribed(sim)
            sent = await send_whales(sim, 1)
            await wait_stored(exporter, sent, 15, "the first whale")
            for _ in range(8):
                filler = fill(disk)
                # Leave room for part of the next batch: its write is torn.
                os.truncate(filler, max(0, filler.stat().st_size - rng.randint(200, 3_000)))
                sent += await send_whales(sim, 3)
                await wait_for(detected(exporter, len(sent)), 15, "detection")
                filler.unlink()
                await wait_stored(exporter, sent, 60, "every whale so far")
            assert await exporter.metric("whale_journal_skipped_lines_total") == 0
            rows = await exporter.whales()
            assert sorted(row["txid"] for row in rows) == sorted(sent)  # each exactly once
            assert exporter.count("Traceback") == 0, exporter.log


async def test_a_read_only_store_is_one_line_and_status_2(tmp_path: Path) -> None:
    """A database on a read-only filesystem stops the start with one line naming --db, status 2.

    (A filesystem cannot be remounted read-only under a running exporter: Linux refuses while
    files are open for writing. A full disk is the fault that can strike at run time.)
    """
    with small_disk(tmp_path / "disk", "4m") as disk:
        remounted = subprocess.run(
            ["mount", "-o", "remount,ro", str(disk)], capture_output=True, check=False
        )
        if remounted.returncode != 0:
            pytest.skip(f"cannot remount read-only: {remounted.stderr.decode().strip()}")
        clean = {k: v for k, v in os.environ.items() if not k.startswith("WHALE_")}
        result = subprocess.run(
            [sys.executable, "-m", "exporter", "run", "--db", str(disk / "w.duckdb"),
             "--listen", "127.0.0.1:0", "--mempool-url", "http://127.0.0.1:9"],
            env=clean, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--db / WHALE_DB" in lines[0], result.stderr
    assert "Read-only" in lines[0] or "read-only" in lines[0].lower()
