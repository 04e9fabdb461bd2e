"""The projected-block sweep: gross values of the top of the mempool, over WebSocket.

`track-mempool` sends no snapshot, so after a start, a reconnect or a sequence gap the resync
(`shell/resync.py`) sweeps the projected blocks: on a short-lived second connection, subscribe
to each projected block in turn (`track-mempool-block` N; one index per connection, so each
subscription replaces the last) and keep every entry's gross value. Gross value is an upper
bound of the whale value: an entry below the floor is no whale, one above it is a candidate
fetched in full, and the largest go first.

Limit: the lists cover the top ~8 MvB of the mempool by fee rate. Deeper transactions are
found by the txid-list diff, the esplora source, or the block audit when they confirm.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import orjson
from websockets.asyncio.client import ClientConnection, connect

from exporter.core.frames import encode

log = logging.getLogger(__name__)
MAX_BLOCKS = 8


async def projected_entries(ws_url: str, *, max_frame_bytes: int) -> dict[str, int]:
    """Every txid in the projected blocks' lists with its gross value (sum of all outputs).

    The caller bounds it with `asyncio.timeout`: a server may never answer an index.
    """
    async with connect(ws_url, max_size=max_frame_bytes, ping_interval=None, close_timeout=2) as ws:
        await ws.send(encode({"action": "want", "data": ["mempool-blocks"]}))
        count = min(await _block_count(ws), MAX_BLOCKS)
        found: dict[str, int] = {}
        for index in range(count):
            await ws.send(encode({"track-mempool-block": index}))
            found.update(gross_values(await _block_list(ws, index)))
        await ws.send(encode({"track-mempool-block": -1}))
    return found


def gross_values(entries: Iterable[object]) -> dict[str, int]:
    """Entries are [txid, fee, vsize, value, rate, flags, time]; value is the gross output."""
    found = {}
    for entry in entries:
        if (
            isinstance(entry, list)
            and len(entry) >= 4
            and isinstance(entry[0], str)
            and isinstance(entry[3], int | float)
        ):
            found[entry[0]] = int(entry[3])
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
