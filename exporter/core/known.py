"""The txids known to be in the mempool, kept compact enough for 700k of them.

A txid is kept as the integer of its first 8 bytes (16 hex digits): at 700k txids the chance
that two share a prefix is about 1 in 40 million, and a collision only makes one transaction
look known. The bulk lives in a sorted `array('Q')` (8 bytes a txid); changes since the last
merge sit in two small sets that are folded in once they grow. A rebuild from the instance's
txid list replaces the bulk while the stream keeps changing the set: changes made during the
rebuild are replayed on the new bulk, so none is lost.
"""

from __future__ import annotations

import heapq
import re
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator

from exporter.core.frames import MempoolDelta

CHUNK = 65_536  # txids sorted at a time while building: bounds the temporary Python ints
TXID_IN_LIST = re.compile(rb'"([0-9a-f]{64})"')


def prefix(txid: str) -> int:
    """The 8-byte key of a txid; raises ValueError for a non-hex one."""
    return int(txid[:16], 16)


class TxidScanner:
    """Reads a JSON array of txid strings chunk by chunk (never the whole body at once)."""

    def __init__(self) -> None:
        self._carry = b""

    def feed(self, chunk: bytes) -> list[str]:
        data = self._carry + chunk
        found, end = [], 0
        for match in TXID_IN_LIST.finditer(data):
            end = match.end()
            found.append(match.group(1).decode())
        # Keep a possibly cut txid (at most 65 bytes) for the next chunk.
        self._carry = data[max(end, len(data) - 65) :]
        return found


def scan_txids(chunks: Iterable[bytes]) -> Iterator[str]:
    """Txids of a JSON array of txid strings given in chunks."""
    scanner = TxidScanner()
    for chunk in chunks:
        yield from scanner.feed(chunk)


def sorted_keys(keys: Iterable[int]) -> array[int]:
    """A sorted, duplicate-free array of keys, built with bounded temporary memory."""
    runs: list[array[int]] = []
    batch: list[int] = []
    for key in keys:
        batch.append(key)
        if len(batch) >= CHUNK:
            runs.append(array("Q", sorted(batch)))
            batch = []
    if batch:
        runs.append(array("Q", sorted(batch)))
    out: array[int] = array("Q")
    last = -1
    for key in heapq.merge(*runs):
        if key != last:
            out.append(key)
            last = key
    return out


class KnownTxids:
    """Set of txid keys: `add`, `discard`, `in`; `apply` follows one stream message."""

    def __init__(self, merge_at: int = 50_000) -> None:
        self._bulk: array[int] = array("Q")
        self._added: set[int] = set()  # added since the last merge (some may be in the bulk)
        self._gone: set[int] = set()  # in the bulk, but removed since
        self._merge_at = merge_at
        self._log: list[tuple[bool, int]] | None = None  # changes during a rebuild

    def __len__(self) -> int:
        """The size; between merges it may count a re-added txid twice (never too few)."""
        return len(self._bulk) - len(self._gone) + len(self._added)

    def __contains__(self, txid: object) -> bool:
        if not isinstance(txid, str):
            return False
        try:
            return self.has_key(prefix(txid))
        except ValueError:
            return False

    def has_key(self, key: int) -> bool:
        if key in self._added:
            return True
        return key not in self._gone and self._in_bulk(key)

    def _in_bulk(self, key: int) -> bool:
        bulk = self._bulk
        i = bisect_left(bulk, key)
        return i < len(bulk) and bulk[i] == key

    def add(self, txid: str) -> None:
        try:
            key = prefix(txid)
        except ValueError:
            return
        self._add_key(key)
        if self._log is not None:
            self._log.append((True, key))

    def discard(self, txid: str) -> None:
        try:
            key = prefix(txid)
        except ValueError:
            return
        self._discard_key(key)
        if self._log is not None:
            self._log.append((False, key))

    def _add_key(self, key: int) -> None:
        # No look into the bulk (a bisect costs microseconds at 700k): a key may sit in both
        # for a while; `merge` drops the duplicate.
        self._gone.discard(key)
        self._added.add(key)
        self._maybe_merge()

    def _discard_key(self, key: int) -> None:
        self._added.discard(key)
        if self._bulk and self._in_bulk(key):
            self._gone.add(key)
            self._maybe_merge()

    def apply(self, delta: MempoolDelta) -> None:
        """Follow one `mempool-transactions` message: added and replacements in; the rest out.

        Every stream transaction passes here, so the common case is kept to one short loop.
        """
        added, gone, log = self._added, self._gone, self._log
        for tx in delta.added:
            try:
                key = int(tx["txid"][:16], 16)
            except (TypeError, KeyError, ValueError, IndexError):
                continue
            if gone:
                gone.discard(key)
            added.add(key)
            if log is not None:
                log.append((True, key))
        for old, by in delta.replaced:
            self.discard(old)
            txid = by.get("txid")
            if isinstance(txid, str) and not delta.mined:  # in a block `by` is confirmed
                self.add(txid)
        bulk = self._bulk
        for txids in (delta.removed, delta.mined):
            for txid in txids:
                try:
                    key = int(txid[:16], 16)
                except (TypeError, ValueError):
                    continue
                added.discard(key)
                if bulk and self._in_bulk(key):
                    gone.add(key)
                if log is not None:
                    log.append((False, key))
        self._maybe_merge()

    # --- rebuilding from a full list -------------------------------------------------------

    def begin_rebuild(self) -> None:
        """From now on, record changes so `finish_rebuild` can replay them."""
        self._log = []

    def finish_rebuild(self, bulk: array[int]) -> None:
        """Take `bulk` (from `sorted_keys`) as the whole set, then replay changes since begin."""
        log, self._log = self._log or [], None
        self._bulk, self._added, self._gone = bulk, set(), set()
        for added, key in log:
            if added:
                self._add_key(key)
            else:
                self._discard_key(key)

    def abandon_rebuild(self) -> None:
        self._log = None

    # --- compaction ----------------------------------------------------------------------------

    def _maybe_merge(self) -> None:
        if len(self._added) + len(self._gone) >= max(self._merge_at, len(self._bulk) // 8):
            self.merge()

    def merge(self) -> None:
        """Fold the change sets into the bulk (O(n), without a temporary list of the bulk)."""
        gone = self._gone
        kept = (key for key in self._bulk if key not in gone) if gone else iter(self._bulk)
        bulk: array[int] = array("Q")
        last = -1
        for key in heapq.merge(kept, sorted(self._added)):
            if key != last:
                bulk.append(key)
                last = key
        self._bulk, self._added, self._gone = bulk, set(), set()

    def nbytes(self) -> int:
        """An estimate of the memory held, for the gauge and the benchmark's cross-check."""
        sets = len(self._added) + len(self._gone)
        return self._bulk.buffer_info()[1] * self._bulk.itemsize + sets * 70
