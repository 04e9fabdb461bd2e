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
"""

from __future__ import annotations

import os
from pathlib import Path


class Journal:
    def __init__(self, db: Path) -> None:
        self.path = db.with_name(db.name + ".journal")
        self.loading = db.with_name(db.name + ".journal.loading")
        self._fd: int | None = None

    def open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, data: bytes) -> None:
        """Write `data` (whole lines) to the file; `sealed` syncs it to disk."""
        if self._fd is None:
            raise RuntimeError("journal is not open")
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def sealed(self) -> Path | None:
        """The file to load next: a leftover `.loading`, else the current journal, renamed."""
        if self.loading.exists():
            return self.loading
        if self._fd is None or os.fstat(self._fd).st_size == 0:
            return None
        os.fdatasync(self._fd)
        os.close(self._fd)
        os.replace(self.path, self.loading)
        self.open()
        return self.loading

    def leftovers(self) -> list[Path]:
        """Files a crash left behind, oldest first (before `open`)."""
        return [p for p in (self.loading, self.path) if p.exists() and p.stat().st_size > 0]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
