"""DuckDB store: the one owner of the write connection.

Writes run serially on a single worker thread, in batches, so the event loop never blocks.
Reads run on other threads through their own cursors. The schema is versioned and migrated
forward on open; times are Unix seconds (DOUBLE).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from exporter.models import Flow, Signal, Status, Urgency

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
)
SCHEMA_VERSION = len(MIGRATIONS)

COLUMNS = (
    "chain_id", "txid", "first_seen", "detected_at", "value_sats", "gross_sats", "fee_sats",
    "vsize", "fee_rate", "flow", "entity", "status", "effective_fee_rate", "urgency_score",
    "urgency_level", "urgency_fallback", "bip125", "predicted_blocks", "predicted_height",
    "tip_height", "value_usd", "chain", "resolved_at", "block_height", "block_hash",
    "removed_at", "replaced_out", "backfilled",
)  # fmt: skip
ENUMS: dict[str, Callable[[Any], Any]] = {
    "flow": Flow,
    "status": Status,
    "urgency_level": Urgency,
}


def row_of(signal: Signal) -> tuple[Any, ...]:
    return tuple(
        getattr(signal, name).value if name in ENUMS else getattr(signal, name) for name in COLUMNS
    )


def signal_of(row: Sequence[Any]) -> Signal:
    values = dict(zip(COLUMNS, row, strict=True))
    for name, kind in ENUMS.items():
        values[name] = kind(values[name])
    values["chain"] = list(values["chain"] or [values["txid"]])
    values["replaced_out"] = bool(values["replaced_out"])
    values["backfilled"] = bool(values["backfilled"])
    values["urgency_fallback"] = bool(values["urgency_fallback"])
    values["bip125"] = bool(values["bip125"])
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

    @property
    def is_open(self) -> bool:
        return self._con is not None

    async def open(self) -> None:
        def _open() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = duckdb.connect(str(self.path))
            try:
                migrate(con)
            except Exception:
                con.close()
                raise
            self._con = con

        await self._on_writer(_open)

    async def close(self) -> None:
        def _close() -> None:
            if self._con is not None:
                self._con.close()
                self._con = None

        with contextlib.suppress(RuntimeError):
            await self._on_writer(_close)
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)

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
        """Upsert a batch of signals in one multi-row statement (last version per chain wins)."""
        latest = {signal.chain_id: row_of(signal) for signal in signals}
        if latest:
            await self.write(_upsert, list(latest.values()))

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


def _upsert(con: Connection, rows: list[tuple[Any, ...]]) -> None:
    placeholders = "(" + ", ".join("?" * len(COLUMNS)) + ")"
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        con.execute(
            f"INSERT OR REPLACE INTO signals ({', '.join(COLUMNS)}) VALUES "
            + ", ".join([placeholders] * len(chunk)),
            [value for row in chunk for value in row],
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
