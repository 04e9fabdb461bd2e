"""Hostile frames over loopback: bad parts cost only themselves, absurd numbers go nowhere."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from conftest import StartExporter
from support import BTC, make_tx, txid, wait_for
from websockets.asyncio.server import ServerConnection, serve

TIP = {"id": "00" * 32, "height": 900_000, "timestamp": 1_750_000_000}


@contextlib.asynccontextmanager
async def hostile(frames: list[bytes]) -> AsyncIterator[str]:
    """A WebSocket server on 127.0.0.1 that sends `frames` to each client, then idles."""

    async def handler(ws: ServerConnection) -> None:
        for frame in frames:
            await ws.send(frame.decode())
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]  # type: ignore[index]
        yield f"http://127.0.0.1:{port}"


def added(*txs: Any, sequence: int = 1) -> bytes:
    return orjson.dumps({"mempool-transactions": {"sequence": sequence, "added": list(txs)}})


async def test_a_whale_survives_malformed_neighbours(start_exporter: StartExporter) -> None:
    """A whale next to a tx whose vin is a number and one whose input txid is a list is stored."""
    whale = make_tx([("bc1qsomeone", 500 * BTC)])
    vin_number = {**make_tx([("bc1qa", 200 * BTC)]), "vin": 7}
    txid_list = make_tx([("bc1qb", 300 * BTC)])
    txid_list["vin"][0]["txid"] = [txid()]
    later = make_tx([("bc1qsomeoneelse", 400 * BTC)])
    frames = [added(vin_number, whale, txid_list), added(later, sequence=2)]
    async with hostile(frames) as url:
        exporter = await start_exporter(url, backfill=False)
        await wait_for(
            lambda: (
                exporter.value("whale_transactions_total", flow="unknown") == 2
                or exporter.value("whale_stream_decode_errors_total", kind="frame") == 1
            ),
            what="both frames processed",
        )
        stored = {row["txid"] for row in await exporter.whales()}
        assert stored == {whale["txid"], later["txid"]}
        assert exporter.value("whale_stream_decode_errors_total", kind="transaction") == 2
        assert exporter.value("whale_stream_decode_errors_total", kind="frame") == 0


async def test_absurd_numbers_never_reach_the_store(start_exporter: StartExporter) -> None:
    """A block at height 2^64-1 and projected blocks of 1e30 vB are rejected; whales after them
    are stored with sane predictions."""
    whales = [make_tx([("bc1qsomeone", (300 + n) * BTC)]) for n in range(3)]
    projected = [{"blockSize": 1e30, "blockVSize": 1e30, "nTx": 5, "totalFees": 1,
                  "medianFee": 5, "feeRange": [1, 5, 9]}]  # fmt: skip
    impossible_tip = {**TIP, "id": "11" * 32, "height": 2**64 - 1}
    absurd_fees = {"fastestFee": 1e300, "halfHourFee": 2, "hourFee": 2, "economyFee": 1,
                   "minimumFee": 1}  # fmt: skip
    frames = [
        orjson.dumps({"blocks": [TIP]}),
        orjson.dumps({"block": impossible_tip, "mempool-transactions": {"sequence": 1}}),
        orjson.dumps({"mempool-blocks": projected}),
        added(whales[0], sequence=2),
        orjson.dumps({"fees": absurd_fees}),
        added(whales[1], sequence=3),
        orjson.dumps({"mempoolInfo": {"size": 10, "bytes": -1}, "conversions": {"USD": 1e30}}),
        added(whales[2], sequence=4),
    ]
    async with hostile(frames) as url:
        exporter = await start_exporter(url, backfill=False)
        await wait_for(lambda: exporter.value("whale_transactions_total", flow="unknown") == 3)
        rows = {row["txid"]: row for row in await exporter.whales()}
        assert set(rows) == {tx["txid"] for tx in whales}
        for row in rows.values():
            assert row["tip_height"] == TIP["height"]
            assert row["predicted_blocks"] is not None and row["predicted_blocks"] < 2_000
            assert row["value_usd"] is None
        assert exporter.value("whale_chain_tip_height") == TIP["height"]
        assert exporter.value("whale_stream_decode_errors_total", kind="message") == 5
        assert exporter.value("whale_store_healthy") == 1
        assert exporter.value("whale_store_rejected_rows_total") == 0
