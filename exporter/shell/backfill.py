"""Backfill: find whales that entered the mempool while we were not listening.

`track-mempool` sends no snapshot, so after a start, a reconnect or a sequence gap we sweep
the projected blocks: on a short-lived second connection, subscribe to each projected block in
turn (`track-mempool-block` N; one index per connection, so each subscription replaces the
last) and keep the transactions whose gross value reaches the floor. Gross value is an upper
bound of the whale value, so no whale in the lists is missed; each candidate is then fetched
in full over REST and goes through normal detection.

Limit: the lists cover the top ~8 MvB of the mempool by fee rate. A whale paying less than
everything in them is not found by a sweep; it is found by a later sweep once it rises into
the lists, or confirms unseen.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import orjson
from websockets.asyncio.client import ClientConnection, connect

from exporter.core.frames import encode

log = logging.getLogger(__name__)
MAX_BLOCKS = 8


async def projected_candidates(ws_url: str, floor_sats: int, *, max_frame_bytes: int) -> list[str]:
    """Txids in the projected blocks whose outputs sum to at least `floor_sats`.

    The caller bounds it with `asyncio.timeout`: a server may never answer an index.
    """
    async with connect(ws_url, max_size=max_frame_bytes, ping_interval=None, close_timeout=2) as ws:
        await ws.send(encode({"action": "want", "data": ["mempool-blocks"]}))
        count = min(await _block_count(ws), MAX_BLOCKS)
        found: list[str] = []
        for index in range(count):
            await ws.send(encode({"track-mempool-block": index}))
            found.extend(whales_in(await _block_list(ws, index), floor_sats))
        await ws.send(encode({"track-mempool-block": -1}))
    return found


def whales_in(entries: Iterable[object], floor_sats: int) -> list[str]:
    """Entries are [txid, fee, vsize, value, rate, flags, time]; value is the gross output."""
    found = []
    for entry in entries:
        if (
            isinstance(entry, list)
            and len(entry) >= 4
            and isinstance(entry[0], str)
            and isinstance(entry[3], int | float)
            and entry[3] >= floor_sats
        ):
            found.append(entry[0])
    return found


async def _next_object(ws: ClientConnection) -> dict[str, object]:
    while True:
        try:
            data = orjson.loads(await ws.recv())
        except orjson.JSONDecodeError:
            continue
        if isinstance(data, dict):
            return data


async def _block_count(ws: ClientConnection) -> int:
    while True:
        blocks = (await _next_object(ws)).get("mempool-blocks")
        if isinstance(blocks, list):
            return len(blocks)


async def _block_list(ws: ClientConnection, index: int) -> list[object]:
    while True:
        message = (await _next_object(ws)).get("projected-block-transactions")
        if (
            isinstance(message, dict)
            and message.get("index") == index
            and isinstance(message.get("blockTransactions"), list)
        ):
            entries: list[object] = message["blockTransactions"]
            return entries
