"""The chain the exporter knows: the last blocks by height, and the forks they reveal. Pure.

The server re-sends `blocks` after a reorg only when its indexing is on, so every block is
checked on its own: a block whose `previousblockhash` is not the hash known one height below,
or a height seen again with another hash, means the known blocks from there up left the chain.
"""

from __future__ import annotations

from collections.abc import Iterable

KEEP = 200  # blocks remembered (and persisted): far deeper than any reorg


class KnownChain:
    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._hashes: dict[int, str] = {}  # height -> hash

    def restore(self, blocks: Iterable[tuple[int, str]]) -> None:
        """Take back the blocks persisted by an earlier run."""
        for height, block_hash in blocks:
            self._hashes[height] = block_hash
        self._trim()

    def blocks(self) -> list[tuple[int, str]]:
        """(height, hash) of every known block, lowest first."""
        return sorted(self._hashes.items())

    def see(self, height: int, block_hash: str, previous: str | None) -> list[str]:
        """Record a block; returns the hashes of known blocks it shows are orphaned."""
        known = self._hashes.get(height)
        if known == block_hash:
            return []
        orphaned = self._cut(height) if known is not None else []
        if isinstance(previous, str) and previous:
            parent = self._hashes.get(height - 1)
            if parent is not None and parent != previous:
                orphaned = self._cut(height - 1) + orphaned
            self._hashes[height - 1] = previous  # the parent, whether known before or not
        self._hashes[height] = block_hash
        self._trim()
        return orphaned

    def forget(self, block_hash: str) -> list[str]:
        """A block flagged stale: it, and anything known above it, left the chain."""
        for height, known in self._hashes.items():
            if known == block_hash:
                return self._cut(height)
        return []

    def _cut(self, height: int) -> list[str]:
        """Remove the known blocks at `height` and above; returns their hashes, lowest first."""
        above = sorted(h for h in self._hashes if h >= height)
        return [self._hashes.pop(h) for h in above]

    def _trim(self) -> None:
        for height in sorted(self._hashes)[: max(len(self._hashes) - self.keep, 0)]:
            del self._hashes[height]
