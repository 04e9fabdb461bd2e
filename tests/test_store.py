"""The DuckDB store: forward migrations, batched upserts and queries, on real files."""

from __future__ import annotations

from pathlib import Path

import duckdb
from support import BTC, make_tx

from exporter.core.addresses import AddressBook
from exporter.core.detect import detect
from exporter.core.models import Flow, Scoring, Signal, Status, Urgency
from exporter.shell.store import MIGRATIONS, SCHEMA_VERSION, Store, WhaleQuery, migrate


def signal(btc: float = 200, *, at: float = 1_000.0, rbf: bool = True, score: float = 0.5):
    tx = make_tx([("a", int(btc * BTC))], sequence=0 if rbf else 0xFFFFFFFF)
    scoring = Scoring(score, Urgency.MEDIUM, False, 2, 800_000, None)
    return Signal.new(detect(tx, AddressBook({})), scoring, at)


def test_migrates_a_version_1_database_forward(tmp_path: Path) -> None:
    """A database at schema 1 with a row is migrated to the latest schema, keeping the row."""
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE schema_version (version INTEGER, applied_at DOUBLE)")
        for statement in MIGRATIONS[0]:
            con.execute(statement)
        con.execute("INSERT INTO schema_version VALUES (1, 0)")
        con.execute(
            "INSERT INTO signals VALUES ('c', 't', 1, 2, 3, 4, 5, 6, 7, 'inflow', 'X', 'pending')"
        )
    with duckdb.connect(str(path)) as con:
        assert migrate(con) == 1
        assert migrate(con) == SCHEMA_VERSION  # idempotent
        versions = con.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()
        assert [v for (v,) in versions] == list(range(1, SCHEMA_VERSION + 1))
        row = con.execute("SELECT txid, urgency_score, replaced_out FROM signals").fetchone()
        assert row == ("t", None, False)


async def test_batch_upsert_keeps_the_latest_version(tmp_path: Path) -> None:
    """Saving the same chain twice in one batch stores its last state once."""
    store = Store(tmp_path / "w.duckdb")
    await store.open()
    try:
        first = signal()
        updated = first.snapshot()
        updated.status = Status.CONFIRMED
        await store.save([first, updated, signal(300)])
        rows = await store.whales(WhaleQuery())
        assert len(rows) == 2
        assert (await store.get(first.txid)).status is Status.CONFIRMED  # type: ignore[union-attr]
        assert await store.load_pending() == [r for r in rows if r.status is Status.PENDING]
    finally:
        await store.close()


async def test_whale_filters(tmp_path: Path) -> None:
    """Each API filter narrows the result, newest first, within the limit."""
    store = Store(tmp_path / "w.duckdb")
    await store.open()
    try:
        small, big = signal(150, at=10, rbf=False, score=0.2), signal(900, at=20, score=0.9)
        big.flow = Flow.INFLOW
        await store.save([small, big])
        ids = lambda rows: [r.txid for r in rows]  # noqa: E731
        assert ids(await store.whales(WhaleQuery())) == [big.txid, small.txid]
        assert ids(await store.whales(WhaleQuery(limit=1))) == [big.txid]
        assert ids(await store.whales(WhaleQuery(min_btc=500))) == [big.txid]
        assert ids(await store.whales(WhaleQuery(since=15))) == [big.txid]
        assert ids(await store.whales(WhaleQuery(until=15))) == [small.txid]
        assert ids(await store.whales(WhaleQuery(since=5, until=10))) == [small.txid]
        assert ids(await store.whales(WhaleQuery(flow=Flow.UNKNOWN))) == [small.txid]
        assert ids(await store.whales(WhaleQuery(rbf=False))) == [small.txid]
        assert ids(await store.whales(WhaleQuery(min_urgency=0.5))) == [big.txid]
        assert ids(await store.whales(WhaleQuery(outcome=Status.CONFIRMED))) == []
    finally:
        await store.close()


async def test_journal_survives_a_crash_before_loading(tmp_path: Path) -> None:
    """Signals journaled but never loaded into DuckDB (a crash) are loaded at the next open."""
    store = Store(tmp_path / "w.duckdb")
    await store.open()
    first = signal(150)
    await store.save([first])
    newer = first.snapshot()
    newer.status = Status.CONFIRMED
    await store.save([newer, signal(400)])
    # a crash: the process dies without loading or closing anything
    store._journal.close()
    store._con.close()  # type: ignore[union-attr]
    for pool in (store._appender, store._writer, store._readers):
        pool.shutdown()
    journal = tmp_path / "w.duckdb.journal"
    with journal.open("ab") as handle:
        handle.write(b'{"seq": 1, "chain_id": "torn')  # a half-written last line
    again = Store(tmp_path / "w.duckdb")
    await again.open()
    try:
        rows = {row.txid: row for row in await again.whales(WhaleQuery())}
        assert len(rows) == 2
        assert rows[first.txid].status is Status.CONFIRMED
        assert not journal.with_name("w.duckdb.journal.loading").exists()
    finally:
        await again.close()


async def test_outpoints_survive_the_round_trip(tmp_path: Path) -> None:
    """A pending whale's spent outpoints come back from DuckDB as they went in."""
    store = Store(tmp_path / "w.duckdb")
    await store.open()
    try:
        whale = signal()
        assert whale.outpoints
        await store.save([whale])
        (back,) = await store.load_pending()
        assert back.outpoints == whale.outpoints
        assert back == whale
    finally:
        await store.close()


def test_migration_gives_each_prediction_its_own_tip(tmp_path: Path) -> None:
    """Rows a fee bump left with the first tip are repaired; plain rows keep a first prediction."""
    path = tmp_path / "old.duckdb"
    repair = next(i for i, m in enumerate(MIGRATIONS) if any("first_tip_height" in s for s in m))
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE schema_version (version INTEGER, applied_at DOUBLE)")
        for version in range(repair):
            for statement in MIGRATIONS[version]:
                con.execute(statement)
            con.execute("INSERT INTO schema_version VALUES (?, 0)", [version + 1])
        for chain_id, chain, tip, blocks, height in (
            ("bumped", ["bumped", "bump"], 800_000, 1, 800_011),  # bumped at tip 800,010
            ("plain", ["plain"], 800_000, 3, 800_003),
        ):
            con.execute(
                "INSERT INTO signals (chain_id, txid, detected_at, value_sats, gross_sats,"
                " fee_sats, vsize, fee_rate, flow, status, chain, tip_height, predicted_blocks,"
                " predicted_height) VALUES (?, ?, 0, 1, 1, 1, 1, 1, 'unknown', 'pending', ?, ?, ?,"
                " ?)",
                [chain_id, chain[-1], chain, tip, blocks, height],
            )
    with duckdb.connect(str(path)) as con:
        migrate(con)
        rows = con.execute(
            "SELECT chain_id, tip_height, predicted_blocks, first_tip_height,"
            " first_predicted_blocks FROM signals ORDER BY chain_id"
        ).fetchall()
    assert rows == [("bumped", 800_010, 1, None, None), ("plain", 800_000, 3, 800_000, 3)]


async def test_known_blocks_and_corrections_survive_a_restart(tmp_path: Path) -> None:
    """The known chain is saved whole and read back; a signal's corrected outcome round-trips."""
    store = Store(tmp_path / "w.duckdb")
    await store.open()
    try:
        await store.save_blocks([(800_000, "aa" * 32), (800_001, "bb" * 32)])
        await store.save_blocks([(800_001, "cc" * 32), (800_002, "dd" * 32)])
        whale = signal()
        whale.corrected_from = Status.DROPPED
        whale.first_tip_height, whale.first_predicted_blocks = 799_990, 6
        await store.save([whale])
    finally:
        await store.close()
    again = Store(tmp_path / "w.duckdb")
    await again.open()
    try:
        assert await again.load_blocks() == [(800_001, "cc" * 32), (800_002, "dd" * 32)]
        (back,) = await again.load_pending()
        assert back == whale
    finally:
        await again.close()
