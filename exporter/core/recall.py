"""Recall: which confirmed whales were caught in the mempool, and which only in a block.

Each chain is counted once, however many events report its confirmation (a reorg reopens and
confirms it again; a dropped whale corrected to mined reports it late).
"""

from __future__ import annotations

from collections import OrderedDict

from exporter.core.models import Signal


class Recall:
    def __init__(self, remember: int = 20_000) -> None:
        self.remember = remember
        self._counted: OrderedDict[str, None] = OrderedDict()

    def confirmed(self, signal: Signal) -> str | None:
        """`"mempool"` or `"block"` the first time a chain is seen confirmed, else None."""
        if not signal.confirmed_whale or signal.chain_id in self._counted:
            return None
        self._counted[signal.chain_id] = None
        while len(self._counted) > self.remember:
            self._counted.popitem(last=False)
        return "mempool" if signal.seen_in_mempool else "block"

    def remember_counted(self, signals: list[Signal]) -> None:
        """After a restart: chains already confirmed were counted by the earlier run."""
        for signal in signals:
            if signal.confirmed_whale:
                self._counted[signal.chain_id] = None
