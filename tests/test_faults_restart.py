"""SIGKILL during flow, again and again: after each restart nothing is lost or duplicated."""

from __future__ import annotations

from pathlib import Path

from faults import Check, ExporterProcess, send_whales, subscribed, wait_stored
from support import wait_for

from exporter.sim.mempool import SimulatedMempool


async def test_repeated_sigkill_loses_and_duplicates_nothing(
    sim: SimulatedMempool, tmp_path: Path
) -> None:
    """Killed with SIGKILL mid-flow three times (whales arriving before, during and while it is
    down, some mined meanwhile), the restarted exporter holds every whale exactly once and the
    mined ones as confirmed."""
    exporter = ExporterProcess("--mempool-url", sim.url, "--db", str(tmp_path / "w.duckdb"),
                               "--stale-after", "5", "--ping-interval", "1")  # fmt: skip
    sent: list[str] = []
    mined: list[str] = []
    try:
        for round_ in range(3):
            await exporter.start()
            await subscribed(sim, round_ + 1)
            await wait_stored(exporter, sent, 60, "every whale so far")
            if round_ == 1:  # mined while the exporter is up, then it dies right after
                mined = sent[:2]
                await sim.mine(mined)
            for _ in range(3):  # flow, and the kill lands in the middle of it
                sent += await send_whales(sim, 2)
            await exporter.kill()
            sent += await send_whales(sim, 1, 300)  # while it is down
            if round_ == 2:
                mined += sent[2:4]
                await sim.mine(sent[2:4])  # mined while it is down
        await exporter.start()
        await wait_stored(exporter, sent, 60, "every whale after the last restart")
        await wait_for(_confirmed(exporter, mined), 60, "the mined whales confirmed",
                       lambda: exporter.log)  # fmt: skip
        rows = await exporter.whales()
        txids = [row["txid"] for row in rows]
        assert sorted(txids) == sorted(sent)  # every whale, each exactly once
        assert exporter.count("Traceback") == 0, exporter.log
        assert await exporter.stop() == 0
    finally:
        await exporter.aclose()


def _confirmed(exporter: ExporterProcess, txids: list[str]) -> Check:
    async def check() -> bool:
        rows = await exporter.whales()
        status = {row["txid"]: row["status"] for row in rows}
        return all(status.get(txid) == "confirmed" for txid in txids)

    return check
