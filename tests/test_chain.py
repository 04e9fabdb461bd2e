"""The known chain: forks seen from previousblockhash, heights seen again, stale blocks."""

from __future__ import annotations

from exporter.core.chain import KnownChain

A, B, C, D, E = ("a" * 64, "b" * 64, "c" * 64, "d" * 64, "e" * 64)


def test_a_block_on_the_known_tip_orphans_nothing() -> None:
    """A block whose parent is the known tip extends the chain and learns nothing else."""
    chain = KnownChain()
    assert chain.see(100, A, None) == []
    assert chain.see(101, B, A) == []
    assert chain.see(101, B, A) == []  # the same block again
    assert chain.blocks() == [(100, A), (101, B)]


def test_a_parent_other_than_the_known_tip_orphans_it() -> None:
    """A block whose previousblockhash differs from the known block below orphans that block."""
    chain = KnownChain()
    chain.see(100, A, None)
    chain.see(101, B, A)
    assert chain.see(102, D, C) == [B]
    assert chain.blocks() == [(100, A), (101, C), (102, D)]


def test_a_height_seen_again_orphans_it_and_everything_above() -> None:
    """Another hash at a known height replaces that block and the blocks built on it."""
    chain = KnownChain()
    for height, (block, parent) in enumerate([(A, None), (B, A), (C, B)], start=100):
        chain.see(height, block, parent)
    assert chain.see(101, D, A) == [B, C]
    assert chain.blocks() == [(100, A), (101, D)]


def test_a_gap_in_the_known_chain_orphans_nothing() -> None:
    """An older block not known before (a list after a restart) is no evidence of a fork."""
    chain = KnownChain()
    chain.see(105, E, D)
    assert chain.see(100, A, None) == []
    assert chain.blocks() == [(100, A), (104, D), (105, E)]


def test_a_stale_block_is_forgotten_with_what_is_above() -> None:
    """A block flagged stale leaves the chain, with any known block above it."""
    chain = KnownChain()
    chain.see(100, A, None)
    chain.see(101, B, A)
    assert chain.forget(A) == [A, B]
    assert chain.forget(C) == []


def test_memory_is_bounded_and_restorable() -> None:
    """Only the newest blocks are kept, and they survive a restart through restore()."""
    chain = KnownChain(keep=3)
    previous = None
    for height in range(10):
        block = f"{height:064x}"
        chain.see(height, block, previous)
        previous = block
    assert [h for h, _ in chain.blocks()] == [7, 8, 9]
    again = KnownChain(keep=3)
    again.restore(chain.blocks())
    assert again.see(10, "f" * 64, "0" * 64) == [f"{9:064x}"]
