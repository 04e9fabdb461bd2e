"""The live fee picture, and urgency and confirmation prediction against it. No I/O.

Urgency is the share of the mempool's vbytes that pays a lower fee rate than the whale. The
projected blocks (`mempool-blocks`) give each block's vsize and its fee-rate percentiles
(`feeRange`, ascending). mempool computes them by transaction count at about p1, p10, p25, p50,
p75, p90 and p99 (`calcEffectiveFeeStatistics` in its `common.ts`); within a block the share is
interpolated linearly between those positions, taking a transaction's share as its vsize share.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeGuard

from exporter.core.frames import Frame
from exporter.core.models import Detection, Scoring, Urgency

BLOCK_VSIZE = 1_000_000
FEE_KEYS = {
    "fastestFee": "fastest",
    "halfHourFee": "half_hour",
    "hourFee": "hour",
    "economyFee": "economy",
    "minimumFee": "minimum",
}
# Used only when the instance has sent no fee data at all yet.
STATIC_LEVELS = {"fastest": 20.0, "half_hour": 10.0, "hour": 5.0, "economy": 2.0, "minimum": 1.0}
# Fallback score at each recommended level; interpolated linearly in between.
FALLBACK_ANCHORS = (("minimum", 0.1), ("economy", 0.3), ("hour", 0.5), ("half_hour", 0.7),
                    ("fastest", 0.9))  # fmt: skip
# Where mempool's seven `feeRange` points sit: [~p1, p10, p25, p50, p75, p90, ~p99] by count.
FEE_RANGE_PERCENTILES = (0.01, 0.10, 0.25, 0.50, 0.75, 0.90, 0.99)
# Fallback prediction: blocks expected at each level (fastest = next block, ...).
FALLBACK_BLOCKS = (("fastest", 1), ("half_hour", 3), ("hour", 6), ("economy", 144))


@dataclass(frozen=True, slots=True)
class ProjectedBlock:
    vsize: float
    n_tx: int
    median_fee: float
    fee_range: tuple[float, ...]  # ascending percentiles, min to max


@dataclass(frozen=True, slots=True)
class FeePicture:
    """What the instance last said about the mempool; any part may be missing."""

    blocks: tuple[ProjectedBlock, ...] = ()
    blocks_at: float | None = None
    recommended: Mapping[str, float] | None = None
    mempool_count: int | None = None
    mempool_vbytes: float | None = None
    tip_height: int | None = None
    price_usd: float | None = None
    price_at: float | None = None  # when the price was last heard

    def fresh_blocks(self, now: float, max_age: float) -> tuple[ProjectedBlock, ...]:
        fresh = self.blocks_at is not None and now - self.blocks_at <= max_age
        return self.blocks if fresh else ()


def update_picture(picture: FeePicture, frame: Frame, now: float) -> tuple[FeePicture, str | None]:
    """The picture after one frame, and what was wrong with its fee messages (None if nothing).

    A malformed `mempool-blocks` or `fees` message is left out; the rest of the frame still
    counts. The tip only moves up (a stale block never lowers it).
    """
    problem = None
    try:
        if frame.mempool_blocks is not None:
            blocks = parse_mempool_blocks(frame.mempool_blocks)
            picture = replace(picture, blocks=blocks, blocks_at=now)
        if frame.fees is not None:
            picture = replace(picture, recommended=parse_fees(frame.fees))
    except (ValueError, TypeError) as exc:
        problem = str(exc) or type(exc).__name__
    info = frame.mempool_info
    if info is not None:
        size, vbytes = info.get("size"), info.get("bytes")
        if isinstance(size, int) and _finite(vbytes):
            picture = replace(picture, mempool_count=size, mempool_vbytes=float(vbytes))
    heights = [b.get("height") for b in (frame.blocks or []) if isinstance(b, dict)]
    if frame.block is not None and not frame.block.get("stale"):
        heights.append(frame.block.get("height"))
    valid = [h for h in heights if isinstance(h, int) and not isinstance(h, bool)]
    if valid:
        picture = replace(picture, tip_height=max([*valid, picture.tip_height or 0]))
    usd = (frame.prices or {}).get("USD")
    if _finite(usd) and usd > 0:
        picture = with_price(picture, float(usd), now)
    return picture, problem


def with_rest_blocks(picture: FeePicture, items: Any, now: float) -> FeePicture:
    """The picture with projected blocks from REST (`/api/v1/fees/mempool-blocks`)."""
    if not isinstance(items, list):
        raise ValueError("mempool-blocks is not a list")
    return replace(picture, blocks=parse_mempool_blocks(items), blocks_at=now)


def with_rest_fees(picture: FeePicture, item: Any) -> FeePicture:
    """The picture with the recommended levels from REST (`/api/v1/fees/recommended`)."""
    if not isinstance(item, dict):
        raise ValueError("fees is not an object")
    return replace(picture, recommended=parse_fees(item))


def with_tip(picture: FeePicture, height: int) -> FeePicture:
    """The picture with a tip height from REST; the tip never moves down."""
    return replace(picture, tip_height=max(height, picture.tip_height or 0))


def with_price(picture: FeePicture, usd: float | None, now: float) -> FeePicture:
    """The picture with a price heard at `now`; None forgets the price."""
    return replace(picture, price_usd=usd, price_at=None if usd is None else now)


def price_expired(picture: FeePicture, now: float, max_age: float) -> bool:
    """Whether the price is older than `max_age` (an old price is worse than none)."""
    return picture.price_at is not None and now - picture.price_at > max_age


def parse_mempool_blocks(items: Sequence[Any]) -> tuple[ProjectedBlock, ...]:
    """Validate a `mempool-blocks` list; malformed entries raise ValueError."""
    blocks = []
    for item in items:
        if not isinstance(item, dict):
            raise ValueError("projected block is not an object")
        fee_range = item.get("feeRange") or []
        rates = sorted(float(rate) for rate in fee_range if _finite(rate))
        median = item.get("medianFee", rates[len(rates) // 2] if rates else 0.0)
        vsize: Any = item.get("blockVSize")
        if not _finite(vsize) or not _finite(median):
            raise ValueError("projected block without blockVSize or medianFee")
        median = float(median)
        n_tx = item.get("nTx")
        blocks.append(
            ProjectedBlock(float(vsize), n_tx if isinstance(n_tx, int) else 0, median, tuple(rates))
        )
    return tuple(blocks)


def parse_fees(item: Mapping[str, Any]) -> dict[str, float]:
    """`fees` message or REST /v1/fees/recommended -> {level: sat/vB}."""
    levels = {name: float(item[key]) for key, name in FEE_KEYS.items() if _finite(item.get(key))}
    if len(levels) != len(FEE_KEYS):
        raise ValueError("fees without all five levels")
    return levels


def _finite(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def share_below(rate: float, blocks: Sequence[ProjectedBlock]) -> float:
    """Share of the projected mempool's vbytes that pays less than `rate`."""
    total = sum(block.vsize for block in blocks)
    if total <= 0:
        return 1.0
    below = sum(block.vsize * _fraction_below(rate, block.fee_range) for block in blocks)
    return min(max(below / total, 0.0), 1.0)


def _fraction_below(rate: float, points: tuple[float, ...]) -> float:
    """Share of one block paying less than `rate`, from its ascending `feeRange` points.

    Seven points are mempool's percentiles (`FEE_RANGE_PERCENTILES`); any other count is taken
    as evenly spaced from minimum to maximum. Below the first point nothing pays less; above the
    last, everything does.
    """
    if not points:
        return 0.5
    if rate <= points[0]:
        return 0.0
    if rate > points[-1]:
        return 1.0
    if len(points) == len(FEE_RANGE_PERCENTILES):
        positions: Sequence[float] = FEE_RANGE_PERCENTILES
    else:
        positions = [k / (len(points) - 1) for k in range(len(points))]
    i = bisect.bisect_left(points, rate)  # points[i-1] < rate <= points[i]
    low, high = points[i - 1], points[i]
    within = (rate - low) / (high - low) if high > low else 0.0
    return positions[i - 1] + within * (positions[i] - positions[i - 1])


def fallback_score(rate: float, levels: Mapping[str, float]) -> float:
    """Urgency from the five recommended levels alone, when no projected blocks are known."""
    anchors = [(levels[name], score) for name, score in FALLBACK_ANCHORS]
    if rate <= anchors[0][0]:
        return anchors[0][1] * rate / anchors[0][0] if anchors[0][0] > 0 else 0.0
    for (low_rate, low), (high_rate, high) in itertools.pairwise(anchors):
        if rate <= high_rate:
            span = high_rate - low_rate
            return low + (high - low) * ((rate - low_rate) / span if span > 0 else 1.0)
    top_rate, top = anchors[-1]
    return min(1.0, top + (1.0 - top) * (rate - top_rate) / top_rate) if top_rate > 0 else 1.0


def level_of(score: float) -> Urgency:
    if score >= 0.7:
        return Urgency.HIGH
    if score >= 0.4:
        return Urgency.MEDIUM
    return Urgency.LOW


def predict_blocks(
    rate: float,
    position_block: int | None,
    blocks: Sequence[ProjectedBlock],
    levels: Mapping[str, float] | None = None,
) -> int:
    """Blocks until confirmation: from `position.block`, else from where the rate falls."""
    if position_block is not None and position_block < len(blocks) - 1:
        return position_block + 1
    if blocks:
        for index, block in enumerate(blocks[:-1]):
            floor = block.fee_range[0] if block.fee_range else block.median_fee
            if rate >= floor:
                return index + 1
        # The last projected block aggregates the rest of the mempool.
        rest = blocks[-1]
        floor = rest.fee_range[0] if rest.fee_range else rest.median_fee
        depth = 1 - _fraction_below(rate, rest.fee_range) if rate >= floor else 1.0
        return len(blocks) - 1 + max(1, math.ceil(depth * rest.vsize / BLOCK_VSIZE))
    levels = levels or STATIC_LEVELS
    for name, count in FALLBACK_BLOCKS:
        if rate >= levels[name]:
            return count
    return 1008


def score(
    detection: Detection, picture: FeePicture, now: float, *, max_age: float = 120.0
) -> Scoring:
    """Urgency and prediction of one whale against the picture of `now`."""
    rate = detection.effective_fee_rate
    blocks = picture.fresh_blocks(now, max_age)
    if blocks:
        value, fallback = share_below(rate, blocks), False
    else:
        value, fallback = fallback_score(rate, picture.recommended or STATIC_LEVELS), True
    value = round(value, 4)
    usd = None
    if picture.price_usd:
        usd = round(detection.value_btc * picture.price_usd, 2)
    return Scoring(
        urgency_score=value,
        urgency_level=level_of(value),
        urgency_fallback=fallback,
        predicted_blocks=predict_blocks(
            rate, detection.position_block, blocks, picture.recommended
        ),
        tip_height=picture.tip_height,
        value_usd=usd,
    )
