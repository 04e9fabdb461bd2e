"""Sane ranges for every number that arrives from the wire, and checks against them. No I/O.

A value outside its range is not Bitcoin: it is a bug or an attack upstream. The element that
carries it (a transaction, a block, one message) is rejected where it is decoded, so it never
reaches the fee picture, the tracker or the store. The ranges are generous on purpose: each
is far beyond anything real, yet small enough for a 32-bit column and for float arithmetic.
"""

from __future__ import annotations

import math
import re
from typing import Any

from exporter.core.errors import DecodeError
from exporter.core.models import MAX_BTC, SATS_PER_BTC

MAX_SATS = MAX_BTC * SATS_PER_BTC
MAX_HEIGHT = 10_000_000  # block 10M is about 190 years away
MIN_TIME = 1_231_006_505  # the genesis block's time
MAX_TIME = 2**32 - 1  # a block header's time is a uint32
MAX_TX_VSIZE = 4_000_000  # a whole block's weight
MAX_FEE_RATE = 1e9  # sat/vB: ten BTC per vbyte, far beyond any fee ever paid
MAX_MEMPOOL_VSIZE = 1e12  # vbytes in the whole mempool (or the last projected block)
MAX_MEMPOOL_COUNT = 100_000_000
MAX_PRICE = 1e9  # USD per BTC
MAX_INDEX = 2**32 - 1  # an output index or an input sequence (uint32)
MAX_ITEMS = 1_000_000  # inputs, outputs or list entries in one element
TXID = re.compile(r"[0-9a-f]{64}")


def is_int(value: Any) -> bool:
    return type(value) is int  # bool is not int here, on purpose


def is_number(value: Any) -> bool:
    return (type(value) is int or type(value) is float) and math.isfinite(value)


def integer(value: Any, low: int, high: int, what: str) -> int:
    """`value` as an int within [low, high], or DecodeError naming `what`."""
    if type(value) is not int:
        raise DecodeError(f"{what} is not an integer")
    if not low <= value <= high:
        raise DecodeError(f"{what} {value} is out of range [{low}, {high}]")
    return value


def number(value: Any, low: float, high: float, what: str) -> float:
    """`value` as a finite float within [low, high], or DecodeError naming `what`."""
    if not is_number(value):
        raise DecodeError(f"{what} is not a finite number")
    if not low <= value <= high:
        raise DecodeError(f"{what} {value:g} is out of range [{low:g}, {high:g}]")
    return float(value)


def optional_number(item: Any, key: str, low: float, high: float) -> float | None:
    """`item[key]` checked like `number`, or None when it is absent or null."""
    value = item.get(key)
    return None if value is None else number(value, low, high, key)


def txid(value: Any, what: str = "txid") -> str:
    if type(value) is not str or not TXID.fullmatch(value):
        raise DecodeError(f"{what} is not 64 lowercase hex characters")
    return value


def sats(value: Any, what: str) -> int:
    return integer(value, 0, MAX_SATS, what)


def height(value: Any, what: str = "height") -> int:
    return integer(value, 0, MAX_HEIGHT, what)


def timestamp(value: Any, what: str = "timestamp") -> float:
    return number(value, MIN_TIME, MAX_TIME, what)


def fee_rate(value: Any, what: str = "fee rate") -> float:
    return number(value, 0, MAX_FEE_RATE, what)
