"""Recall counting: each confirmed whale chain once, by where it was first seen."""

from __future__ import annotations

from support import make_signal, txid

from exporter.core.models import Status
from exporter.core.recall import Recall


def test_each_confirmed_chain_counts_once_by_where_it_was_seen() -> None:
    """A mempool whale counts as `mempool`, an audit whale as `block`, a repeat not at all."""
    recall = Recall()
    caught = make_signal(txid(), 200, status=Status.CONFIRMED, block_height=800_000)
    missed = make_signal(
        txid(), 300, status=Status.CONFIRMED, block_height=800_001, seen_in_mempool=False
    )
    assert recall.confirmed(caught) == "mempool"
    assert recall.confirmed(caught) is None  # a reorg re-confirms it: not a second whale
    assert recall.confirmed(missed) == "block"


def test_unconfirmed_outcomes_do_not_count() -> None:
    """Pending, dropped and replaced-out chains are not confirmed whales."""
    recall = Recall()
    assert recall.confirmed(make_signal(txid(), 200)) is None
    assert recall.confirmed(make_signal(txid(), 200, status=Status.DROPPED)) is None
    replaced_out = make_signal(
        txid(), 200, status=Status.REPLACED, block_height=800_000, replaced_out=True
    )
    assert recall.confirmed(replaced_out) is None
    via_replacement = make_signal(txid(), 200, status=Status.REPLACED, block_height=800_000)
    assert recall.confirmed(via_replacement) == "mempool"


def test_chains_counted_before_a_restart_are_not_counted_again() -> None:
    """Whales confirmed by an earlier run are remembered and not counted twice."""
    recall = Recall()
    done = make_signal(txid(), 200, status=Status.CONFIRMED, block_height=800_000)
    recall.remember_counted([done])
    assert recall.confirmed(done) is None
