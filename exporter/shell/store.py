"""DuckDB store: the one owner of the write connection.

Signals are saved through the journal (`journal.py`): durable in a tenth of a millisecond, then
loaded into DuckDB in bulk by DuckDB itself (`read_json`), on the single writer thread, so the
event loop never blocks and Python binds no parameters. Every read loads pending lines first,
so readers never see less than was saved. Reads run on other threads through their own
cursors. The schema is versioned and migrated forward on open; times are Unix seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import orjson

from exporter.core.models import Flow, Signal, Status, Urgency
from exporter.shell.journal import Journal

log = logging.getLogger(__name__)
T = TypeVar("T")
Connection = Any  # duckdb.DuckDBPyConnection; duckdb ships no usable stubs for strict mypy

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the core signal row
    (
        """CREATE TABLE signals (
            chain_id VARCHAR PRIMARY KEY,
            txid VARCHAR NOT NULL,
            first_seen DOUBLE,
            detected_at DOUBLE NOT NULL,
            value_sats BIGINT NOT NULL,
            gross_sats BIGINT NOT NULL,
            fee_sats BIGINT NOT NULL,
            vsize DOUBLE NOT NULL,
            fee_rate DOUBLE NOT NULL,
            flow VARCHAR NOT NULL,
            entity VARCHAR,
            status VARCHAR NOT NULL
        )""",
    ),
    # 2: urgency, prediction, fiat value, RBF and the replacement chain
    (
        "ALTER TABLE signals ADD COLUMN effective_fee_rate DOUBLE",
        "ALTER TABLE signals ADD COLUMN urgency_score DOUBLE",
        "ALTER TABLE signals ADD COLUMN urgency_level VARCHAR",
        "ALTER TABLE signals ADD COLUMN urgency_fallback BOOLEAN",
        "ALTER TABLE signals ADD COLUMN bip125 BOOLEAN",
        "ALTER TABLE signals ADD COLUMN predicted_blocks INTEGER",
        "ALTER TABLE signals ADD COLUMN predicted_height INTEGER",
        "ALTER TABLE signals ADD COLUMN tip_height INTEGER",
        "ALTER TABLE signals ADD COLUMN value_usd DOUBLE",
        "ALTER TABLE signals ADD COLUMN chain VARCHAR[]",
    ),
    # 3: outcomes
    (
        "ALTER TABLE signals ADD COLUMN resolved_at DOUBLE",
        "ALTER TABLE signals ADD COLUMN block_height INTEGER",
        "ALTER TABLE signals ADD COLUMN block_hash VARCHAR",
        "ALTER TABLE signals ADD COLUMN removed_at DOUBLE",
        "ALTER TABLE signals ADD COLUMN replaced_out BOOLEAN DEFAULT false",
        "ALTER TABLE signals ADD COLUMN backfilled BOOLEAN DEFAULT false",
    ),
    # 4: notifications: dedup keys that survive restarts, and every delivery attempt
    (
        """CREATE TABLE notifications (
            dedup_key VARCHAR PRIMARY KEY,
            chain_id VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,
            created_at DOUBLE NOT NULL
        )""",
        """CREATE TABLE deliveries (
            sent_at DOUBLE NOT NULL,
            chain_id VARCHAR,
            txid VARCHAR,
            tag VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,
            attempt INTEGER NOT NULL,
            result VARCHAR NOT NULL,
            error VARCHAR
        )""",
    ),
    # 5: the outpoints a pending whale spends, so a conflict after a restart is a replacement
    ("ALTER TABLE signals ADD COLUMN outpoints VARCHAR[]",),
    # 6: whales first found in a block by the audit; values counted gross (no prevouts)
    (
        "ALTER TABLE signals ADD COLUMN seen_in_mempool BOOLEAN DEFAULT true",
        "ALTER TABLE signals ADD COLUMN value_is_gross BOOLEAN DEFAULT false",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

COLUMNS = (
    "chain_id", "txid", "first_seen", "detected_at", "value_sats", "gross_sats", "fee_sats",
    "vsize", "fee_rate", "flow", "entity", "status", "effective_fee_rate", "urgency_score",
    "urgency_level", "urgency_fallback", "bip125", "predicted_blocks", "predicted_height",
    "tip_height", "value_usd", "chain", "resolved_at", "block_height", "block_hash",
    "removed_at", "replaced_out", "backfilled", "outpoints", "seen_in_mempool", "value_is_gross",
)  # fmt: skip
ENUMS: dict[str, Callable[[Any], Any]] = {
    "flow": Flow,
    "status": Status,
    "urgency_level": Urgency,
}


def row_of(signal: Signal) -> tuple[Any, ...]:
    def value(name: str) -> Any:
        if name == "outpoints":
            return [f"{txid}:{vout}" for txid, vout in signal.outpoints]
        item = getattr(signal, name)
        return item.value if name in ENUMS else item

    return tuple(value(name) for name in COLUMNS)


def signal_of(row: Sequence[Any]) -> Signal:
    values = dict(zip(COLUMNS, row, strict=True))
    for name, kind in ENUMS.items():
        values[name] = kind(values[name])
    values["chain"] = list(values["chain"] or [values["txid"]])
    values["replaced_out"] = bool(values["replaced_out"])
    values["backfilled"] = bool(values["backfilled"])
    values["seen_in_mempool"] = values["seen_in_mempool"] is not False
    values["value_is_gross"] = bool(values["value_is_gross"])
    values["urgency_fallback"] = bool(values["urgency_fallback"])
    values["bip125"] = bool(values["bip125"])
    values["outpoints"] = tuple(
        (txid, int(vout))
        for txid, _, vout in (o.rpartition(":") for o in values["outpoints"] or ())
    )
    return Signal(**values)


def migrate(con: Connection) -> int:
    """Bring the schema to SCHEMA_VERSION; returns the version found before."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER, applied_at DOUBLE)")
    found = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise RuntimeError(f"database schema {found} is newer than this exporter's")
    for version in range(found + 1, SCHEMA_VERSION + 1):
        con.execute("BEGIN")
        for statement in MIGRATIONS[version - 1]:
            con.execute(statement)
        con.execute("INSERT INTO schema_version VALUES (?, epoch(now()))", [version])
        con.execute("COMMIT")
        log.info("store migrated to schema %d", version)
    return int(found)


@dataclass(frozen=True, slots=True)
class WhaleQuery:
    """Filters of GET /api/v1/whales, already validated."""

    limit: int = 100
    since: float | None = None
    flow: Flow | None = None
    min_btc: float | None = None
    status: Status | None = None
    outcome: Status | None = None
    min_urgency: float | None = None
    rbf: bool | None = None


class Store:
    """Owns the DuckDB file. Use `await open()`, then `write`, `read`, `close`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._con: Connection | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="duckdb-writer")
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="duckdb-reader")
        self._journal = Journal(path)
        self._appender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._dirty = False
        self._sync_lock = asyncio.Lock()
        self._seq = itertools.count(time.time_ns())  # orders lines, also across restarts
        self._reading = ""

    @property
    def is_open(self) -> bool:
        return self._con is not None

    async def open(self) -> None:
        def _open() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # DuckDB would take 80% of RAM for its buffers; an exporter's tables need little.
            con = duckdb.connect(str(self.path), config={"memory_limit": "256MB", "threads": 2})
            try:
                migrate(con)
                self._reading = _json_columns(con)
                for leftover in self._journal.leftovers():
                    log.info("loading %s left by an earlier run", leftover.name)
                    _load_journal(con, leftover, self._reading)
                    leftover.unlink()
            except Exception:
                con.close()
                raise
            self._con = con
            self._journal.open()

        await self._on_writer(_open)

    async def close(self) -> None:
        """Load what is journaled, then close; a failed load is replayed at the next open."""

        def _close() -> None:
            self._journal.close()
            if self._con is not None:
                self._con.close()
                self._con = None

        if self._con is not None:
            try:
                await self.sync()
            except Exception:
                log.exception("journal load at close failed; it is loaded at the next start")
        with contextlib.suppress(RuntimeError):
            await self._on_writer(_close)
        for pool in (self._appender, self._writer, self._readers):
            pool.shutdown(wait=True)

    async def sync(self) -> None:
        """Load every journaled line into DuckDB (no-op when nothing was saved since)."""
        async with self._sync_lock:
            if not self._dirty and not self._journal.loading.exists():
                return
            self._dirty = False
            loop = asyncio.get_running_loop()
            try:
                # Sealing runs on the journal thread, after every append already submitted.
                sealed = await loop.run_in_executor(self._appender, self._journal.sealed)
                if sealed is not None:
                    await self._on_writer(self._load, sealed)
            except BaseException:
                self._dirty = True
                raise

    def _load(self, sealed: Path) -> None:
        _load_journal(self._connection(), sealed, self._reading)
        sealed.unlink()

    async def _on_writer(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(con, *args)` on the writer thread, inside one transaction."""

        def _run() -> T:
            con = self._connection()
            con.execute("BEGIN")
            try:
                result = fn(con, *args)
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
            return result

        return await self._on_writer(_run)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(cursor, *args)` on a reader thread with a cursor of its own."""
        await self.sync()

        def _run() -> T:
            cursor = self._connection().cursor()
            try:
                return fn(cursor, *args)
            finally:
                cursor.close()

        return await asyncio.get_running_loop().run_in_executor(self._readers, _run)

    def _connection(self) -> Connection:
        if self._con is None:
            raise RuntimeError("store is not open")
        return self._con

    # --- signals -------------------------------------------------------------------------

    async def save(self, signals: Iterable[Signal]) -> None:
        """Journal a batch of signals durably; returns once they are on disk."""
        lines = b"".join(
            orjson.dumps({"seq": next(self._seq), **dict(zip(COLUMNS, row_of(s), strict=True))})
            + b"\n"
            for s in signals
        )
        if lines:
            self._dirty = True
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._appender, self._journal.append, lines)

    async def load_pending(self) -> list[Signal]:
        return await self.read(_select_signals, "WHERE status = 'pending'", [])

    async def load_since(self, since: float) -> list[Signal]:
        """Signals resolved since `since` (for rebuilding accuracy windows)."""
        return await self.read(
            _select_signals, "WHERE resolved_at >= ? ORDER BY resolved_at", [since]
        )

    async def get(self, txid: str) -> Signal | None:
        rows = await self.read(
            _select_signals, "WHERE chain_id = ? OR list_contains(chain, ?) LIMIT 1", [txid, txid]
        )
        return rows[0] if rows else None

    async def whales(self, query: WhaleQuery) -> list[Signal]:
        clauses, params = [], []
        for column, op, value in (
            ("detected_at", ">=", query.since),
            ("flow", "=", query.flow and query.flow.value),
            ("value_sats", ">=", None if query.min_btc is None else query.min_btc * 1e8),
            ("status", "=", query.status and query.status.value),
            ("status", "=", query.outcome and query.outcome.value),
            ("urgency_score", ">=", query.min_urgency),
            ("bip125", "=", query.rbf),
        ):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                params.append(value)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        params.append(query.limit)
        tail = f"{where} ORDER BY detected_at DESC LIMIT ?"
        return await self.read(_select_signals, tail, params)

    async def summary(self, since: float) -> dict[str, Any]:
        return await self.read(_summary, since)

    async def delete_before(self, cutoff: float) -> int:
        """Retention: delete resolved signals detected before `cutoff`, and old delivery rows."""
        return await self.write(_delete_before, cutoff)


def _json_columns(con: Connection) -> str:
    """How to read journal lines: read_json's `columns` struct, and a filter of whole rows."""
    rows = con.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_name = 'signals'"
    ).fetchall()
    types = {name: kind for name, kind, _ in rows}
    fields = ", ".join(f"{name}: '{types[name]}'" for name in COLUMNS)
    required = " AND ".join(f"{name} IS NOT NULL" for name, _, null in rows if null == "NO")
    return f"columns = {{seq: 'BIGINT', {fields}}}, ignore_errors = true) WHERE {required}"


def _load_journal(con: Connection, path: Path, reading: str) -> None:
    """Upsert the newest line of each chain in `path`; a torn last line is skipped."""
    con.execute(
        f"INSERT OR REPLACE INTO signals ({', '.join(COLUMNS)}) "
        f"SELECT {', '.join(COLUMNS)} FROM read_json(?, format = 'newline_delimited', "
        f"{reading} QUALIFY row_number() OVER (PARTITION BY chain_id ORDER BY seq DESC) = 1",
        [str(path)],
    )


def _select_signals(cursor: Connection, tail: str, params: list[Any]) -> list[Signal]:
    rows = cursor.execute(f"SELECT {', '.join(COLUMNS)} FROM signals {tail}", params).fetchall()
    return [signal_of(row) for row in rows]


def _summary(cursor: Connection, since: float) -> dict[str, Any]:
    by_flow = cursor.execute(
        "SELECT flow, count(*), sum(value_sats) / 1e8, avg(urgency_score) FROM signals "
        "WHERE detected_at >= ? GROUP BY flow",
        [since],
    ).fetchall()
    outcomes = cursor.execute(
        "SELECT status, count(*) FROM signals WHERE resolved_at >= ? GROUP BY status", [since]
    ).fetchall()
    total = cursor.execute(
        "SELECT count(*), coalesce(sum(value_sats) / 1e8, 0), avg(urgency_score) "
        "FROM signals WHERE detected_at >= ?",
        [since],
    ).fetchone()
    return {
        "whales": int(total[0]),
        "volume_btc": float(total[1]),
        "average_urgency": None if total[2] is None else round(float(total[2]), 4),
        "by_flow": {
            flow: {"whales": int(count), "volume_btc": float(volume or 0)}
            for flow, count, volume, _ in by_flow
        },
        "outcomes": {status: int(count) for status, count in outcomes},
    }


def _delete_before(con: Connection, cutoff: float) -> int:
    deleted = 0
    for statement in (
        "DELETE FROM notifications WHERE created_at < ?",
        "DELETE FROM deliveries WHERE sent_at < ?",
        # A pending whale is still followed (it expires long before retention reaches it).
        "DELETE FROM signals WHERE detected_at < ? AND status <> 'pending'",
    ):
        deleted += int(con.execute(statement, [cutoff]).fetchone()[0])
    return deleted
