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
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import orjson

from exporter.core.models import Flow, Signal, Status, Urgency
from exporter.errors import StoreUnavailable
from exporter.metrics import Metrics
from exporter.shell.health import StoreHealth
from exporter.shell.journal import Journal, lenient, load_journal, reading_of, row_problem

log = logging.getLogger(__name__)
T = TypeVar("T")
Connection = Any  # duckdb.DuckDBPyConnection; duckdb ships no usable stubs for strict mypy
MAX_BACKLOG = 10_000  # rows kept in memory while the disk refuses them
MAX_REFUSED = 1_000  # refused rows kept in memory when even the .rejected file cannot take them
STORE_ERRORS = (OSError, duckdb.Error)

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
    # 7: the whale stream's events, in order, so a client that reconnects gets what it missed
    (
        """CREATE TABLE events (
            id BIGINT PRIMARY KEY,
            saved_at DOUBLE NOT NULL,
            kind VARCHAR NOT NULL,
            chain_id VARCHAR NOT NULL,
            data VARCHAR NOT NULL
        )""",
    ),
    # 8: each prediction with its own tip (repairs rows a fee bump left with the first tip),
    # the first prediction kept apart, the outcome a correction replaced, and the known blocks
    (
        "ALTER TABLE signals ADD COLUMN first_predicted_blocks INTEGER",
        "ALTER TABLE signals ADD COLUMN first_tip_height INTEGER",
        "ALTER TABLE signals ADD COLUMN corrected_from VARCHAR",
        "UPDATE signals SET first_predicted_blocks = predicted_blocks, "
        "first_tip_height = tip_height WHERE coalesce(len(chain), 1) <= 1",
        "UPDATE signals SET tip_height = predicted_height - predicted_blocks "
        "WHERE predicted_height IS NOT NULL AND predicted_blocks IS NOT NULL",
        "CREATE TABLE blocks (height INTEGER PRIMARY KEY, hash VARCHAR NOT NULL)",
    ),
    # 9: the prediction result counted with the outcome a correction replaced
    ("ALTER TABLE signals ADD COLUMN corrected_hit BOOLEAN",),
    # 10: messages a notification destination had not taken at shutdown, for the next start
    (
        """CREATE TABLE outbox (
            destination VARCHAR NOT NULL,
            held_at DOUBLE NOT NULL,
            message VARCHAR NOT NULL
        )""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
# The notifier's statements on the tables of migration 4, by the first field of its rows.
NOTIFICATION_INSERTS = {
    "key": "INSERT OR IGNORE INTO notifications (dedup_key, chain_id, kind, created_at) "
    "VALUES (?, ?, ?, ?)",
    "delivery": "INSERT INTO deliveries (sent_at, chain_id, txid, tag, kind, attempt, result, "
    "error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
}

COLUMNS = (
    "chain_id", "txid", "first_seen", "detected_at", "value_sats", "gross_sats", "fee_sats",
    "vsize", "fee_rate", "flow", "entity", "status", "effective_fee_rate", "urgency_score",
    "urgency_level", "urgency_fallback", "bip125", "predicted_blocks", "predicted_height",
    "tip_height", "value_usd", "chain", "resolved_at", "block_height", "block_hash",
    "removed_at", "replaced_out", "backfilled", "outpoints", "seen_in_mempool", "value_is_gross",
    "first_predicted_blocks", "first_tip_height", "corrected_from", "corrected_hit",
)  # fmt: skip
ENUMS: dict[str, Callable[[Any], Any]] = {
    "flow": Flow,
    "status": Status,
    "urgency_level": Urgency,
    "corrected_from": Status,
}


def row_of(signal: Signal) -> tuple[Any, ...]:
    def value(name: str) -> Any:
        if name == "outpoints":
            return [f"{txid}:{vout}" for txid, vout in signal.outpoints]
        item = getattr(signal, name)
        return item.value if name in ENUMS and item is not None else item

    return tuple(value(name) for name in COLUMNS)


def signal_of(row: Sequence[Any]) -> Signal:
    values = dict(zip(COLUMNS, row, strict=True))
    for name, kind in ENUMS.items():
        values[name] = None if values[name] is None else kind(values[name])
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
    until: float | None = None
    flow: Flow | None = None
    min_btc: float | None = None
    status: Status | None = None
    outcome: Status | None = None
    min_urgency: float | None = None
    rbf: bool | None = None


class Store:
    """Owns the DuckDB file. Use `await open()`, then `save`, `write`, `read`, `close`.

    Writes never raise for a sick disk: rows the journal cannot take wait in a bounded
    backlog and are retried with backoff (`retry`); `problem` says why meanwhile. A row whose
    values its columns cannot hold is refused alone, kept in `<db>.rejected`, logged once.
    """

    def __init__(self, path: Path, metrics: Metrics | None = None) -> None:
        self.path = path
        self.metrics = metrics
        self.health = StoreHealth(metrics)
        self.rejected_path = path.with_name(path.name + ".rejected")
        self.refused: deque[bytes] = deque(maxlen=MAX_REFUSED)  # what .rejected could not take
        self._con: Connection | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="duckdb-writer")
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="duckdb-reader")
        self._journal = Journal(path)
        self._appender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._dirty = False
        self._sync_lock = asyncio.Lock()
        self._seq = itertools.count(time.time_ns())  # orders lines, also across restarts
        self._reading = ""
        self._types: dict[str, tuple[str, bool]] = {}  # column -> (DuckDB type, nullable)
        self._backlog: OrderedDict[str, bytes] = OrderedDict()  # chain_id -> newest line
        self._logged_refusals: OrderedDict[str, None] = OrderedDict()

    @property
    def problem(self) -> str | None:
        """Why the store cannot write now, or None when it can."""
        return self.health.problem

    @property
    def backlog(self) -> int:
        """Rows waiting in memory for the disk."""
        return len(self._backlog)

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
                self._reading, self._types = reading_of(con, COLUMNS)
                for leftover in self._journal.leftovers():
                    log.info("loading %s left by an earlier run", leftover.name)
                    self._skipped(load_journal(con, leftover, self._reading, COLUMNS), leftover)
                    leftover.unlink()
            except Exception:
                con.close()
                raise
            self._con = con
            self._journal.open()

        await self._on_writer(_open)

    async def close(self) -> None:
        """Write the backlog, load what is journaled, then close; a failed load is replayed at
        the next open."""

        def _close() -> None:
            self._journal.close()
            if self._con is not None:
                self._con.close()
                self._con = None

        if self._con is not None:
            await self.flush(force=True)
            if self._backlog:
                log.error("%d rows could not be saved before exit: the disk still refuses "
                          "them", len(self._backlog))  # fmt: skip
            if not await self.sync(force=True):
                log.warning("journal load at close failed; it is loaded at the next start")
        with contextlib.suppress(RuntimeError):
            await self._on_writer(_close)
        for pool in (self._appender, self._writer, self._readers):
            pool.shutdown(wait=True)

    async def sync(self, *, force: bool = False) -> bool:
        """Load every journaled line into DuckDB (no-op when nothing was saved since).

        Never raises for a sick disk: returns False, and `problem` says why, until a retry
        (with backoff, unless `force`) succeeds.
        """
        async with self._sync_lock:
            if not self._dirty and not self._journal.loading.exists():
                return True
            if not (force or self.health.due("database")):
                return False
            self._dirty = False
            loop = asyncio.get_running_loop()
            try:
                # Sealing runs on the journal thread, after every append already submitted.
                # Twice: a file a failed load left behind, then what was appended meanwhile.
                for _ in range(2):
                    sealed = await loop.run_in_executor(self._appender, self._journal.sealed)
                    if sealed is None:
                        break
                    skipped = await self._on_writer(self._load, sealed)
                    self._skipped(skipped, sealed)
            except STORE_ERRORS as exc:
                self._dirty = True
                self.health.failed("database", exc, len(self._backlog))
                return False
            except BaseException:
                self._dirty = True
                raise
            self.health.succeeded("database")
            return True

    async def retry(self) -> None:
        """Periodic: write the backlog and load the journal, each when its backoff allows."""
        await self.flush()
        await self.sync()

    def _load(self, sealed: Path) -> list[bytes]:
        skipped = load_journal(self._connection(), sealed, self._reading, COLUMNS)
        sealed.unlink()
        return skipped

    def _skipped(self, lines: list[bytes], source: Path) -> None:
        """Journal lines DuckDB could not read (a line torn by a crash): count, keep, log."""
        if not lines:
            return
        if self.metrics is not None:
            self.metrics.journal_skipped.inc(len(lines))
        log.warning(
            "%d unreadable lines in %s skipped (kept in %s)",
            len(lines),
            source.name,
            self.rejected_path.name,
        )
        self._keep_refused(lines)

    def _keep_refused(self, lines: list[bytes]) -> None:
        try:
            with self.rejected_path.open("ab") as handle:
                handle.write(b"".join(line.rstrip(b"\n") + b"\n" for line in lines))
        except OSError:
            self.refused.extend(lines)

    async def _on_writer(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(con, *args)` on the writer thread, inside one transaction.

        Raises StoreUnavailable when the disk or DuckDB refuses; `problem` says why, and the
        store logs it once per change of state, so callers need not log it again.
        """

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

        try:
            result = await self._on_writer(_run)
        except STORE_ERRORS as exc:
            self.health.failed("database", exc, len(self._backlog))
            raise StoreUnavailable(f"store cannot write: {exc}") from None
        self.health.succeeded("database")
        return result

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(cursor, *args)` on a reader thread with a cursor of its own.

        Pending lines are loaded first; when DuckDB cannot load them now, the read still
        answers from what is loaded. Raises StoreUnavailable when DuckDB cannot answer.
        """
        await self.sync()

        def _run() -> T:
            cursor = self._connection().cursor()
            try:
                return fn(cursor, *args)
            finally:
                cursor.close()

        try:
            return await asyncio.get_running_loop().run_in_executor(self._readers, _run)
        except (RuntimeError, *STORE_ERRORS) as exc:
            raise StoreUnavailable(f"the database cannot answer: {exc}") from None

    def _connection(self) -> Connection:
        if self._con is None:
            raise RuntimeError("store is not open")
        return self._con

    # --- signals -------------------------------------------------------------------------

    async def save(self, signals: Iterable[Signal]) -> None:
        """Journal a batch of signals; returns once they are on disk, or in the backlog.

        Never raises for a sick disk or a bad row: the backlog keeps (bounded) what the disk
        refuses, for `retry`; a row its columns cannot hold is refused alone.
        """
        for signal in signals:
            line = self._line(signal)
            if line is not None:
                self._backlog.pop(signal.chain_id, None)
                self._backlog[signal.chain_id] = line  # newest last; a newer line supersedes
        while len(self._backlog) > MAX_BACKLOG:  # the disk is gone for good: keep the newest
            self._backlog.popitem(last=False)
            if self.metrics is not None:
                self.metrics.store_dropped.inc()
        await self.flush()

    async def flush(self, *, force: bool = False) -> bool:
        """Append the backlog to the journal now (when the backoff allows, or `force`)."""
        if self._backlog and (force or self.health.due("journal")):
            batch = list(self._backlog.items())
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self._appender, self._journal.append, b"".join(line for _, line in batch)
                )
            except OSError as exc:
                self.health.failed("journal", exc, len(self._backlog))
            else:
                for chain_id, line in batch:
                    if self._backlog.get(chain_id) is line:
                        del self._backlog[chain_id]
                self._dirty = True
                self.health.succeeded("journal")
        if self.metrics is not None:
            self.metrics.store_backlog.set(len(self._backlog))
        return not self._backlog

    def _line(self, signal: Signal) -> bytes | None:
        """The journal line of `signal`, or None when a column cannot hold one of its values."""
        values = dict(zip(COLUMNS, row_of(signal), strict=True))
        problem = row_problem(values, self._types)
        if problem is None:
            try:
                return orjson.dumps({"seq": next(self._seq), **values}) + b"\n"
            except orjson.JSONEncodeError as exc:
                problem = str(exc)
        if self.metrics is not None:
            self.metrics.store_rejected.inc()
        if signal.chain_id not in self._logged_refusals:  # once per whale, not per update
            self._logged_refusals[signal.chain_id] = None
            if len(self._logged_refusals) > MAX_REFUSED:
                self._logged_refusals.popitem(last=False)
            log.error(
                "store refused whale %s (%s); kept in %s",
                signal.chain_id,
                problem,
                self.rejected_path.name,
            )
        self._keep_refused([orjson.dumps({k: lenient(v) for k, v in values.items()})])
        return None

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
            ("detected_at", "<=", query.until),
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

    async def save_blocks(self, blocks: list[tuple[int, str]]) -> None:
        """Persist the known chain (height, hash): it replaces the one saved before."""
        await self.write(_save_blocks, blocks)

    async def load_blocks(self) -> list[tuple[int, str]]:
        return await self.read(_load_blocks)

    async def summary(self, since: float) -> dict[str, Any]:
        return await self.read(_summary, since)

    # --- the whale stream's events (id, saved_at, kind, chain_id, JSON) ----------------------

    async def save_events(self, rows: Sequence[tuple[int, float, str, str, str]]) -> None:
        await self.write(_insert_events, rows)

    async def events_after(self, after: int, limit: int) -> list[tuple[int, str, str]]:
        """(id, kind, JSON) of the events after `after`, oldest first."""
        return await self.read(_events_after, after, limit)

    async def last_event_id(self) -> int:
        return await self.read(_last_event_id)

    # --- notifications (schema 4) --------------------------------------------------------

    async def notification_keys(self, since: float) -> list[tuple[str, float]]:
        """The dedup keys claimed since `since`, oldest first: (key, created_at)."""
        return await self.read(_notification_keys, since)

    async def record_notifications(self, batch: Sequence[tuple[Any, ...]]) -> None:
        """Store ("key", ...) and ("delivery", ...) rows (NOTIFICATION_INSERTS) at once."""
        await self.write(_insert_notifications, batch)

    async def save_outbox(self, rows: Sequence[tuple[str, float, str]]) -> None:
        """Keep (destination, held_at, message JSON) for the next start (`notify/outbox.py`)."""
        await self.write(_insert_outbox, rows)

    async def take_outbox(self) -> list[tuple[str, float, str]]:
        """The outbox, oldest first; it is empty afterwards."""
        return await self.write(_take_outbox)

    async def delete_before(self, cutoff: float) -> int:
        """Retention: delete resolved signals detected before `cutoff`, and old delivery rows."""
        return await self.write(_delete_before, cutoff)


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


def _load_blocks(cursor: Connection) -> list[tuple[int, str]]:
    rows = cursor.execute("SELECT height, hash FROM blocks ORDER BY height").fetchall()
    return [(int(height), str(block_hash)) for height, block_hash in rows]


def _save_blocks(con: Connection, blocks: list[tuple[int, str]]) -> None:
    con.execute("DELETE FROM blocks")
    if blocks:
        heights, hashes = zip(*blocks, strict=True)
        con.execute(
            "INSERT INTO blocks SELECT unnest(?::INTEGER[]), unnest(?::VARCHAR[])",
            [list(heights), list(hashes)],
        )


def _notification_keys(cursor: Connection, since: float) -> list[tuple[str, float]]:
    sql = "SELECT dedup_key, created_at FROM notifications WHERE created_at >= ? ORDER BY 2"
    return [(str(key), float(at)) for key, at in cursor.execute(sql, [since]).fetchall()]


def _insert_notifications(con: Connection, batch: Sequence[tuple[Any, ...]]) -> None:
    for kind, statement in NOTIFICATION_INSERTS.items():
        rows = [row[1:] for row in batch if row[0] == kind]
        if rows:
            con.executemany(statement, rows)


def _insert_outbox(con: Connection, rows: Sequence[tuple[str, float, str]]) -> None:
    con.executemany("INSERT INTO outbox VALUES (?, ?, ?)", list(rows))


def _take_outbox(con: Connection) -> list[tuple[str, float, str]]:
    rows = con.execute("SELECT destination, held_at, message FROM outbox ORDER BY held_at")
    taken = [(str(name), float(at), str(message)) for name, at, message in rows.fetchall()]
    con.execute("DELETE FROM outbox")
    return taken


def _delete_before(con: Connection, cutoff: float) -> int:
    deleted = 0
    for statement in (
        "DELETE FROM notifications WHERE created_at < ?",
        "DELETE FROM deliveries WHERE sent_at < ?",
        "DELETE FROM events WHERE saved_at < ?",
        # A pending whale is still followed (it expires long before retention reaches it).
        "DELETE FROM signals WHERE detected_at < ? AND status <> 'pending'",
    ):
        deleted += int(con.execute(statement, [cutoff]).fetchone()[0])
    return deleted


def _insert_events(con: Connection, rows: Sequence[tuple[int, float, str, str, str]]) -> None:
    con.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?)", list(rows))


def _events_after(cursor: Connection, after: int, limit: int) -> list[tuple[int, str, str]]:
    rows = cursor.execute(
        "SELECT id, kind, data FROM events WHERE id > ? ORDER BY id LIMIT ?", [after, limit]
    ).fetchall()
    return [(int(i), str(kind), str(data)) for i, kind, data in rows]


def _last_event_id(cursor: Connection) -> int:
    return int(cursor.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])
