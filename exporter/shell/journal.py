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
"""

from __future__ import annotations

import os
from pathlib import Path


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
