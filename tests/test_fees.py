"""Urgency scoring and confirmation prediction against realistic fee pictures."""

from __future__ import annotations

import orjson
import pytest
from support import BTC, make_tx

from exporter.core.addresses import AddressBook
from exporter.core.detect import detect
from exporter.core.fees import (
    FeePicture,
    ProjectedBlock,
    level_of,
    parse_fees,
    parse_mempool_blocks,
    predict_blocks,
    price_expired,
    score,
    share_below,
    update_picture,
    with_price,
    with_rest_blocks,
    with_rest_fees,
    with_tip,
)
from exporter.core.frames import Frame, decode_frame
from exporter.core.models import Urgency

NOW = 1_700_000_000.0
# A busy mempool: three full blocks and a deep tail (mempool-blocks message shape).
BUSY = parse_mempool_blocks(
    [
        {"blockVSize": 997_000, "nTx": 3000, "medianFee": 42.0,
         "feeRange": [30.1, 31, 33, 42, 55, 80, 400]},
        {"blockVSize": 998_000, "nTx": 3200, "medianFee": 25.0,
         "feeRange": [20.0, 21, 23, 25, 27, 29, 30]},
        {"blockVSize": 999_000, "nTx": 3500, "medianFee": 15.0,
         "feeRange": [12.0, 13, 14, 15, 17, 19, 20]},
        {"blockVSize": 5_000_000, "nTx": 40000, "medianFee": 4.0,
         "feeRange": [1.0, 2, 3, 4, 6, 9, 12]},
    ]
)  # fmt: skip
QUIET = parse_mempool_blocks(
    [{"blockVSize": 300_000, "nTx": 900, "medianFee": 2.0, "feeRange": [1.0, 1.5, 2, 3, 5]}]
)
LEVELS = parse_fees(
    {"fastestFee": 45, "halfHourFee": 28, "hourFee": 18, "economyFee": 6, "minimumFee": 2}
)


def whale(rate: float, *, effective: float | None = None, position: int | None = None):
    tx = make_tx([("a", 500 * BTC)], fee=int(rate * 200), vsize=200,
                 effective_rate=effective, position=position)  # fmt: skip
    return detect(tx, AddressBook({}))


@pytest.mark.parametrize(
    ("picture", "rate", "low", "high", "level", "blocks"),
    [
        (BUSY, 500.0, 1.0, 1.0, Urgency.HIGH, 1),  # above everything: next block
        (BUSY, 42.0, 0.93, 0.94, Urgency.HIGH, 1),  # the first block's median
        (BUSY, 25.0, 0.81, 0.82, Urgency.HIGH, 2),  # most of the backlog is the cheap tail
        (BUSY, 15.0, 0.68, 0.69, Urgency.MEDIUM, 3),
        (BUSY, 3.0, 0.156, 0.157, Urgency.LOW, 7),  # p25 of the 5 MvB tail: 3 + 4 blocks
        (BUSY, 0.5, 0.0, 0.0, Urgency.LOW, 8),
        (QUIET, 1.5, 0.2, 0.3, Urgency.LOW, 1),  # a quiet mempool: one block clears all
        (QUIET, 10.0, 1.0, 1.0, Urgency.HIGH, 1),
    ],
)
def test_score_against_fee_pictures(
    picture: tuple[ProjectedBlock, ...],
    rate: float,
    low: float,
    high: float,
    level: Urgency,
    blocks: int,
) -> None:
    """The score is the vsize share paying less; levels and predicted blocks follow from it."""
    scoring = score(whale(rate), FeePicture(blocks=picture, blocks_at=NOW, tip_height=900), NOW)
    assert low <= scoring.urgency_score <= high
    assert scoring.urgency_level is level
    assert scoring.urgency_fallback is False
    assert scoring.predicted_blocks == blocks
    assert scoring.predicted_height == 900 + blocks


@pytest.mark.parametrize(
    ("rate", "share"),
    [(10.0, 0.10), (25.0, 0.25), (50.0, 0.50), (75.0, 0.75), (90.0, 0.90), (95.0, 0.95)],
)
def test_fee_range_points_are_mempool_percentiles(rate: float, share: float) -> None:
    """feeRange is [~p1, p10, p25, p50, p75, p90, ~p99] by count: a rate at p75 scores 0.75."""
    (block,) = parse_mempool_blocks(
        [{"blockVSize": 1_000_000, "nTx": 4000, "medianFee": 50.0,
          "feeRange": [1.0, 10, 25, 50, 75, 90, 99]}]
    )  # fmt: skip
    assert share_below(rate, [block]) == pytest.approx(share)
    picture = FeePicture(blocks=(block,), blocks_at=NOW)
    assert score(whale(rate), picture, NOW).urgency_score == pytest.approx(share, abs=1e-4)


def test_other_fee_range_lengths_are_evenly_spaced() -> None:
    """A feeRange of another length (not mempool's seven percentiles) is read as evenly spaced."""
    five = ProjectedBlock(1_000_000, 100, 3.0, (1.0, 2.0, 3.0, 4.0, 5.0))
    assert share_below(4.0, [five]) == pytest.approx(0.75)
    assert share_below(2.5, [five]) == pytest.approx(0.375)


def test_share_below_is_monotonic() -> None:
    """Paying more never lowers the share of the mempool below you."""
    shares = [share_below(rate / 4, BUSY) for rate in range(0, 2000)]
    assert shares == sorted(shares)
    assert shares[0] == 0.0 and shares[-1] == 1.0


def test_fallback_before_any_fee_picture() -> None:
    """Without projected blocks the score comes from the recommended levels and says so."""
    picture = FeePicture(recommended=LEVELS)
    at_fastest = score(whale(45), picture, NOW)
    assert at_fastest.urgency_fallback is True
    assert at_fastest.urgency_score == pytest.approx(0.9)
    assert at_fastest.urgency_level is Urgency.HIGH
    assert at_fastest.predicted_blocks == 1
    assert score(whale(18), picture, NOW).urgency_score == pytest.approx(0.5)
    assert score(whale(2), picture, NOW).urgency_level is Urgency.LOW
    assert score(whale(6), picture, NOW).predicted_blocks == 144
    assert score(whale(4), picture, NOW).predicted_blocks == 1008


def test_fallback_without_anything_uses_static_levels() -> None:
    """With no data at all the score still exists, marked as a fallback."""
    scoring = score(whale(10), FeePicture(), NOW)
    assert scoring.urgency_fallback is True
    assert 0.0 < scoring.urgency_score < 1.0
    assert scoring.tip_height is None and scoring.predicted_height is None


def test_stale_blocks_fall_back() -> None:
    """A fee picture older than its maximum age is not used."""
    picture = FeePicture(blocks=BUSY, blocks_at=NOW - 600, recommended=LEVELS)
    assert score(whale(42), picture, NOW).urgency_fallback is True


def test_cpfp_child_raises_effective_rate() -> None:
    """A low-fee whale with a high-fee child scores by the CPFP-aware effective rate."""
    picture = FeePicture(blocks=BUSY, blocks_at=NOW)
    alone = score(whale(3), picture, NOW)
    boosted = score(whale(3, effective=60), picture, NOW)
    assert alone.urgency_level is Urgency.LOW
    assert boosted.urgency_level is Urgency.HIGH
    assert boosted.predicted_blocks == 1


def test_position_block_wins_for_prediction() -> None:
    """When the message carries position.block, the prediction uses it."""
    assert predict_blocks(3.0, 1, BUSY) == 2
    assert predict_blocks(3.0, None, BUSY) == 7


def test_levels() -> None:
    """Levels: high at 0.7 or more, medium at 0.4 or more, else low."""
    assert [level_of(s) for s in (0.7, 0.6999, 0.4, 0.3999)] == [
        Urgency.HIGH, Urgency.MEDIUM, Urgency.MEDIUM, Urgency.LOW]  # fmt: skip


def test_usd_value_from_price() -> None:
    """The USD value is the whale's BTC value at the known price, and absent without one."""
    picture = FeePicture(price_usd=50_000.0)
    assert score(whale(5), picture, NOW).value_usd == 25_000_000.0
    assert score(whale(5), FeePicture(), NOW).value_usd is None


def test_malformed_fee_messages_raise() -> None:
    """Fee messages missing levels or sizes are rejected, not half-used."""
    with pytest.raises(ValueError):
        parse_fees({"fastestFee": 3})
    with pytest.raises(ValueError):
        parse_mempool_blocks([{"nTx": 3}])


@pytest.mark.parametrize(("rate", "share", "level", "blocks"),
                         [(40, 0.9375, Urgency.HIGH, 1), (8, 0.5625, Urgency.MEDIUM, 2),
                          (5, 0.375, Urgency.LOW, 3)])  # fmt: skip
def test_worked_example_of_the_architecture_doc(
    rate: float, share: float, level: Urgency, blocks: int
) -> None:
    """The urgency table in docs/architecture.md is what the code computes."""
    picture = FeePicture(
        blocks=parse_mempool_blocks(
            [{"blockVSize": 1_000_000, "nTx": 3000, "medianFee": 30,
              "feeRange": [20, 22, 25, 30, 40, 60, 150]},
             {"blockVSize": 3_000_000, "nTx": 9000, "medianFee": 5,
              "feeRange": [1, 2, 3, 5, 8, 12, 19]}]
        ),
        blocks_at=NOW,
    )  # fmt: skip
    scoring = score(whale(rate), picture, NOW)
    assert (scoring.urgency_score, scoring.urgency_level) == (share, level)
    assert scoring.predicted_blocks == blocks


def frame(**messages: object) -> Frame:
    """A decoded frame carrying `messages` (keys as on the wire)."""
    return decode_frame(orjson.dumps(messages))


BLOCKS_MESSAGE = [{"blockVSize": 900_000, "nTx": 2000, "medianFee": 5.0,
                   "feeRange": [1, 2, 3, 5, 8, 12, 20]}]  # fmt: skip
FEES_MESSAGE = {"fastestFee": 9, "halfHourFee": 7, "hourFee": 5, "economyFee": 2, "minimumFee": 1}


def test_picture_update_takes_every_part_of_a_frame() -> None:
    """Projected blocks, fees, mempool size, the tip and the price all come from one frame."""
    picture, problem = update_picture(
        FeePicture(),
        frame(**{"mempool-blocks": BLOCKS_MESSAGE, "fees": FEES_MESSAGE,
                 "mempoolInfo": {"size": 51_000, "bytes": 30_000_000},
                 "block": {"id": "ab" * 32, "height": 900_001},
                 "conversions": {"USD": 97_000}}),
        NOW,
    )  # fmt: skip
    assert problem is None
    assert picture.blocks[0].vsize == 900_000 and picture.blocks_at == NOW
    assert picture.recommended is not None and picture.recommended["hour"] == 5
    assert (picture.mempool_count, picture.mempool_vbytes) == (51_000, 30_000_000)
    assert picture.tip_height == 900_001
    assert (picture.price_usd, picture.price_at) == (97_000, NOW)


def test_picture_update_keeps_the_rest_of_a_frame_with_a_bad_fee_message() -> None:
    """A malformed fees message is reported and left out; the frame's other parts still count."""
    before = FeePicture(recommended=LEVELS, tip_height=900_000)
    bad = Frame(fees={"fastestFee": 3}, block={"id": "cd" * 32, "height": 900_002})
    picture, problem = update_picture(before, bad, NOW)
    assert problem is not None and "five levels" in problem
    assert picture.recommended == LEVELS and picture.tip_height == 900_002


def test_picture_tip_never_moves_down_and_ignores_stale_blocks() -> None:
    """A stale block or an older blocks list does not lower the tip."""
    before = FeePicture(tip_height=900_010)
    stale = frame(block={"id": "ef" * 32, "height": 900_011, "stale": True})
    assert update_picture(before, stale, NOW)[0].tip_height == 900_010
    older = frame(blocks=[{"id": "01" * 32, "height": 900_003}])
    assert update_picture(before, older, NOW)[0].tip_height == 900_010
    assert update_picture(before, frame(pong=True), NOW) == (before, None)


def test_price_ages_out() -> None:
    """A price older than its maximum age has expired; forgetting it clears its time too."""
    picture = with_price(FeePicture(), 90_000.0, NOW)
    assert not price_expired(picture, NOW + 900, 900) and price_expired(picture, NOW + 901, 900)
    assert with_price(picture, None, NOW + 901) == FeePicture()


def test_rest_answers_update_the_picture() -> None:
    """Projected blocks, fees and the tip from REST go into the picture; bad shapes are refused."""
    picture = with_rest_blocks(FeePicture(), BLOCKS_MESSAGE, NOW)
    assert picture.blocks[0].median_fee == 5.0 and picture.blocks_at == NOW
    picture = with_rest_fees(picture, FEES_MESSAGE)
    assert picture.recommended is not None and picture.recommended["fastest"] == 9
    assert with_tip(with_tip(picture, 900_005), 900_001).tip_height == 900_005
    with pytest.raises(ValueError):
        with_rest_blocks(picture, {"not": "a list"}, NOW)
    with pytest.raises(ValueError):
        with_rest_fees(picture, ["not", "an", "object"])
