"""An append-only journal in front of DuckDB.

A DuckDB statement with its commit costs milliseconds; a line appended to a file costs
microseconds. A signal therefore counts as stored once its line is written here: it then
survives a crash of the exporter. The file is synced to disk when it is sealed, at least once
a second, so a crash of the whole machine loses at most the last second (the trade-off of
PostgreSQL's `synchronous_commit = off`). The store loads the journal into DuckDB in bulk
(about once a second, before every read, and at start after a crash), then deletes it.

Two files: `<db>.journal` takes appends; `sealed()` renames it to `<db>.journal.loading` and
starts a new one, so lines appended while a load runs are never lost or loaded twice. All
methods run on one dedicated thread, in the order they were called.

A write that fails part-way (a full disk) would leave a torn line that the next append glues
itself to. The torn part is cut off again; when even that fails, the next append starts on a
fresh line, so at most the torn line itself is unreadable.

Below the file class: what a line may hold (DuckDB's `read_json(ignore_errors)` would turn a
value its column cannot hold into NULL without a word, so rows are checked before they are
written), and the bulk load that reports the lines DuckDB could not read.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson


class Journal:
    def __init__(self, db: Path) -> None:
        self.path = db.with_name(db.name + ".journal")
        self.loading = db.with_name(db.name + ".journal.loading")
        self._fd: int | None = None
        self._active = False  # between open() and close()
        self._size = 0  # bytes of whole lines in the file
        self._torn = False  # the file ends inside a line

    def open(self) -> None:
        self._active = True
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size
        self._torn = False

    def append(self, data: bytes) -> None:
        """Write `data` (whole lines) to the file; `sealed` syncs it to disk.

        Raises OSError when the disk refuses; the file then holds no part of `data`, or at
        worst a torn line that the next append does not touch.
        """
        if not self._active:
            raise RuntimeError("journal is not open")
        if self._fd is None:
            self.open()  # a seal could not start the next file; try again
        assert self._fd is not None
        if self._torn:
            data = b"\n" + data
        view = memoryview(data)
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, view[written:])
        except OSError:
            if written:
                self._cut(written)
            raise
        self._size += len(data)
        self._torn = False

    def _cut(self, written: int) -> None:
        try:
            os.ftruncate(self._fd, self._size)  # type: ignore[arg-type]
        except OSError:
            self._size += written
            self._torn = True

    def sealed(self) -> Path | None:
        """The file to load next: a leftover `.loading`, else the current journal, renamed."""
        if self.loading.exists():
            return self.loading
        if self._fd is None or os.fstat(self._fd).st_size == 0:
            return None
        os.fdatasync(self._fd)
        os.replace(self.path, self.loading)  # the open descriptor follows the renamed file
        os.close(self._fd)
        self._fd = None
        self.open()
        return self.loading

    def leftovers(self) -> list[Path]:
        """Files a crash left behind, oldest first (before `open`)."""
        return [p for p in (self.loading, self.path) if p.exists() and p.stat().st_size > 0]

    def close(self) -> None:
        self._active = False
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# --- lines and DuckDB: what a line may hold, and loading a file of them ----------------------


def reading_of(con: Any, columns: Sequence[str]) -> tuple[str, dict[str, tuple[str, bool]]]:
    """How to read journal lines (read_json's `columns` struct and a filter of whole rows),
    and each column's type and nullability."""
    rows = con.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_name = 'signals'"
    ).fetchall()
    types = {name: (kind, null == "YES") for name, kind, null in rows}
    fields = ", ".join(f"{name}: '{types[name][0]}'" for name in columns)
    required = " AND ".join(["seq IS NOT NULL"] + [
        f"{name} IS NOT NULL" for name, (_, null) in types.items() if not null])  # fmt: skip
    reading = f"columns = {{seq: 'BIGINT', {fields}}}, ignore_errors = true) WHERE {required}"
    return reading, types


INT_RANGES = {"INTEGER": 2**31, "BIGINT": 2**63}


def row_problem(values: dict[str, Any], types: dict[str, tuple[str, bool]]) -> str | None:
    """What in `values` the signals table cannot hold (DuckDB would turn it into NULL)."""
    for name, value in values.items():
        kind, nullable = types.get(name, ("", True))
        if value is None:
            if not nullable:
                return f"{name} is missing"
        elif kind in INT_RANGES:
            bound = INT_RANGES[kind]
            if type(value) is not int or not -bound <= value < bound:
                return f"{name} {value!r} does not fit {kind}"
        elif kind == "DOUBLE" and (not isinstance(value, int | float) or not math.isfinite(value)):
            return f"{name} {value!r} is not a finite number"
    return None


def lenient(value: Any) -> Any:
    """A value for the .rejected file: anything JSON cannot hold becomes its repr."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        return str(value)
    return value


def load_journal(con: Any, path: Path, reading: str, columns: Sequence[str]) -> list[bytes]:
    """Upsert the newest line of each chain in `path`; returns the lines DuckDB could not
    read (a line torn by a crash), which are skipped."""
    source = f"read_json(?, format = 'newline_delimited', {reading}"
    names = ", ".join(columns)
    con.execute(
        f"INSERT OR REPLACE INTO signals ({names}) SELECT {names} FROM {source} "
        f"QUALIFY row_number() OVER (PARTITION BY chain_id ORDER BY seq DESC) = 1",
        [str(path)],
    )
    lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    read = con.execute(f"SELECT count(*) FROM {source}", [str(path)]).fetchone()[0]
    if read == len(lines):
        return []
    seqs = {seq for (seq,) in con.execute(f"SELECT seq FROM {source}", [str(path)]).fetchall()}
    return [line for line in lines if _seq(line) not in seqs]


def _seq(line: bytes) -> int | None:
    try:
        seq = orjson.loads(line).get("seq")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return seq if isinstance(seq, int) else None
