"""The simulated mempool.space server speaks the real protocol over real loopback sockets."""

from __future__ import annotations

import asyncio
import signal
import sys
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
from support import outpoints
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from exporter.sim.mempool import (
    COIN,
    SimulatedMempool,
    project,
    recommended_fees,
    tx_value,
)
from exporter.sim.model import MempoolModel
from exporter.sim.session import Close, Session

Frame = dict[str, Any]
TIMEOUT = 10.0  # an upper bound for waiting on a busy, shared machine, not a speed check


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedMempool]:
    server = SimulatedMempool(seed=7, auto=False)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def ws_url(sim: SimulatedMempool, path: str = "/api/v1/ws") -> str:
    return sim.url.replace("http://", "ws://") + path


async def recv(ws: ClientConnection) -> Frame:
    async with asyncio.timeout(TIMEOUT):
        frame: Frame = orjson.loads(await ws.recv())
    return frame


async def recv_until(
    ws: ClientConnection, test: Callable[[Frame], bool], timeout: float = TIMEOUT
) -> Frame:
    """Read frames until one passes ``test`` (bounded by one overall deadline)."""
    async with asyncio.timeout(timeout):
        while True:
            frame: Frame = orjson.loads(await ws.recv())
            if test(frame):
                return frame


async def send(ws: ClientConnection, *messages: Frame) -> list[Frame]:
    """Send messages, then a ping; return the frames that came before the pong.

    The server handles one connection's messages in order, so after the pong every
    subscription is in place.
    """
    for message in messages:
        await ws.send(orjson.dumps(message).decode())
    await ws.send('{"action":"ping"}')
    frames: list[Frame] = []
    async with asyncio.timeout(TIMEOUT):
        while True:
            frame: Frame = orjson.loads(await ws.recv())
            if frame == {"pong": True}:
                return frames
            frames.append(frame)


@asynccontextmanager
async def client(sim: SimulatedMempool, *messages: Frame) -> AsyncIterator[ClientConnection]:
    async with connect(ws_url(sim), max_size=None) as ws:
        assert "conversions" in await recv(ws)
        await send(ws, *messages)
        yield ws


def payment(sim: SimulatedMempool, btc: float = 1.0, **kwargs: Any) -> dict[str, Any]:
    return sim.make_tx(outputs=[(sim.random_address(), int(btc * COIN))], **kwargs)


# ------------------------------------------------------------------ pure parts


def test_make_tx_is_deterministic_from_the_seed() -> None:
    """Two simulators with one seed build the same txids, values and addresses."""
    a, b = SimulatedMempool(seed=3, auto=False), SimulatedMempool(seed=3, auto=False)
    tx_a, tx_b = a.random_whale(), b.random_whale()
    assert tx_a["txid"] == tx_b["txid"]
    assert tx_a["vout"] == tx_b["vout"]
    assert len(tx_a["txid"]) == 64
    assert tx_value(tx_a) >= 100 * COIN


def test_make_tx_has_the_documented_shape() -> None:
    """A built tx has esplora fields and mempool extras; OP_RETURN has no address key."""
    sim = SimulatedMempool(auto=False)
    tx = sim.make_tx(outputs=[("bc1qexample", 5_000), ("", 0)], fee_rate=4.0, vsize=200)
    assert tx["fee"] == 800
    assert tx["vin"][0]["prevout"]["value"] == 5_800
    assert tx["vin"][0]["sequence"] == 0xFFFFFFFD
    assert "scriptpubkey_address" not in tx["vout"][1]
    assert -(-tx["weight"] // 4) == tx["vsize"] == 200
    for key in ("size", "status", "feePerVsize", "effectiveFeePerVsize", "firstSeen", "position"):
        assert key in tx
    bare = sim.make_tx(outputs=[("bc1qx", 1)], prevouts=False, rbf_signal=False)
    assert bare["vin"][0]["prevout"] is None
    assert bare["vin"][0]["sequence"] == 0xFFFFFFFF


def test_whales_flow_through_exchange_addresses() -> None:
    """With exchange addresses, whales go in, out of and between exchanges, some with change."""
    exchanges = {"bc1qhotwallet0": "binance", "bc1qhotwallet1": "binance", "3Kraken": "kraken"}
    sim = SimulatedMempool(auto=False, exchange_addresses=exchanges)
    whales = [sim.random_whale() for _ in range(60)]
    pairs = [
        (
            {i["prevout"]["scriptpubkey_address"] for i in w["vin"]},
            {o["scriptpubkey_address"] for o in w["vout"]},
        )
        for w in whales
    ]
    known = exchanges.keys()
    assert any(o & known and not i & known for i, o in pairs)  # inflow
    assert any(i & known and not o & known for i, o in pairs)  # outflow
    assert any(i & known and o & known for i, o in pairs)  # internal
    assert any(i & o for i, o in pairs)  # self-change
    assert all(max(o["value"] for o in w["vout"]) >= 100 * COIN for w in whales)


def test_projection_caps_lists_like_the_real_server() -> None:
    """Blocks 0-6 list 1 MvB each, block 7 counts the rest but lists only 1.2 MvB."""
    sim = SimulatedMempool(auto=False)
    txs = [payment(sim, fee_rate=100 - i / 100, vsize=1_000) for i in range(9_500)]
    projection = project(txs)
    assert len(projection.blocks) == 8
    assert [b["nTx"] for b in projection.blocks] == [1_000] * 7 + [2_500]
    assert [len(lst) for lst in projection.lists] == [1_000] * 7 + [1_200]
    assert len(projection.listed) == 8_200
    assert projection.positions[txs[0]["txid"]][0] == 0


def test_recommended_fees_are_monotonic() -> None:
    """Fee levels never increase from fastest to minimum, and small mempools give the minimum."""
    blocks = [
        {"blockVSize": 1_000_000, "medianFee": 20.0},
        {"blockVSize": 1_000_000, "medianFee": 30.0},
        {"blockVSize": 600_000, "medianFee": 2.0},
    ]
    fees = recommended_fees(blocks)
    levels = [fees[k] for k in ("fastestFee", "halfHourFee", "hourFee", "economyFee")]
    assert levels == sorted(levels, reverse=True)
    assert fees["fastestFee"] >= 25.0
    assert recommended_fees([{"blockVSize": 100_000, "medianFee": 50.0}])["fastestFee"] == 1.0


def test_model_and_session_work_without_sockets() -> None:
    """The Sans-I/O model returns a poll as data and a session picks the parts it subscribed to."""
    model = MempoolModel(now=1_750_000_000.0, seed=3)
    tx = model.builder.make_tx(now=1_750_000_000.0, outputs=[("bc1qpay", 150 * COIN)])
    model.add(tx, 1_750_000_001.0)
    event = model.poll(1_750_000_002.0)
    assert event is not None and event.delta is not None
    assert [t["txid"] for t in event.delta["added"]] == [tx["txid"]]
    assert model.poll(1_750_000_003.0) is None  # nothing changed since
    session = Session()
    received = session.receive('{"track-mempool-txids": true}', model, 1_750_000_004.0, 0.0)
    assert received.replies == [] and received.close is None
    frame = dict(session.frame(event))
    assert frame.keys() == {"mempool-txids"}
    assert orjson.loads(frame["mempool-txids"])["added"] == [tx["txid"]]
    assert session.receive("{oops", model, 1_750_000_005.0, 1.0).close == Close(
        1008, "invalid JSON"
    )


# ------------------------------------------------------------------ WebSocket


async def test_want_sends_blocks_stats_and_mempool_blocks(sim: SimulatedMempool) -> None:
    """``want`` answers at once with blocks (last 8), mempoolInfo, fees and mempool-blocks."""
    sim.add(payment(sim))
    await sim.flush()
    async with connect(ws_url(sim)) as ws:
        conversions = (await recv(ws))["conversions"]
        assert {"time", "USD", "EUR"} <= conversions.keys()
        frames = await send(ws, {"action": "want", "data": ["blocks", "stats", "mempool-blocks"]})
    merged = {k: v for f in frames for k, v in f.items()}
    assert len(merged["blocks"]) == 8
    assert merged["blocks"][-1]["height"] == sim.tip_height
    assert {"loaded", "size", "bytes", "usage", "total_fee", "mempoolminfee", "fullrbf"} <= (
        merged["mempoolInfo"].keys()
    )
    assert merged["mempoolInfo"]["size"] == 1
    assert isinstance(merged["vBytesPerSecond"], int)
    assert set(merged["fees"]) == {
        "fastestFee",
        "halfHourFee",
        "hourFee",
        "economyFee",
        "minimumFee",
    }
    (block,) = merged["mempool-blocks"]
    assert {"blockSize", "blockVSize", "nTx", "totalFees", "medianFee", "feeRange"} <= block.keys()


async def test_track_mempool_sends_deltas_without_snapshot(sim: SimulatedMempool) -> None:
    """Subscribing sends nothing; the next poll carries only txs added since."""
    before = payment(sim)
    sim.add(before)
    await sim.flush()
    async with client(sim, {"track-mempool": True}) as ws:
        after = payment(sim)
        sim.add(after)
        sequence = await sim.flush()
        delta = (await recv(ws))["mempool-transactions"]
    assert delta["sequence"] == sequence == 2
    assert [t["txid"] for t in delta["added"]] == [after["txid"]]
    assert delta["added"][0]["position"]["block"] == 0
    assert delta["removed"] == delta["mined"] == delta["replaced"] == []


async def test_replacement_is_in_added_and_replaced(sim: SimulatedMempool) -> None:
    """A replacement arrives in ``added`` and as the ``by`` of a ``replaced`` pair."""
    old = payment(sim, btc=150, fee_rate=5)
    sim.add(old)
    await sim.flush()
    async with client(sim, {"track-mempool": True}) as ws:
        new = sim.make_tx(
            outputs=[(o["scriptpubkey_address"], o["value"]) for o in old["vout"]],
            spends=outpoints(old),
            fee_rate=12,
        )
        assert new["vin"][0]["prevout"] == old["vin"][0]["prevout"]
        sim.replace(old["txid"], new)
        await sim.flush()
        delta = (await recv(ws))["mempool-transactions"]
    assert [t["txid"] for t in delta["added"]] == [new["txid"]]
    assert delta["removed"] == [old["txid"]]
    assert delta["replaced"] == [{"replaced": old["txid"], "by": delta["added"][0]}]
    assert old["txid"] not in sim.mempool


async def test_conflicting_add_is_a_replacement(sim: SimulatedMempool) -> None:
    """Adding a tx that spends a mempool tx's outpoint replaces it, like full-RBF."""
    old = payment(sim, rbf_signal=False)
    sim.add(old)
    await sim.flush()
    async with client(sim, {"track-mempool-txids": True}) as ws:
        sim.add(
            payment(sim, spends=[(old["vin"][0]["txid"], old["vin"][0]["vout"])], txid="ab" * 32)
        )
        await sim.flush()
        delta = (await recv(ws))["mempool-txids"]
    assert delta["replaced"] == [{"replaced": old["txid"], "by": "ab" * 32}]
    assert delta["removed"] == [old["txid"]]


async def test_mine_sends_block_and_mined_in_one_frame(sim: SimulatedMempool) -> None:
    """A block frame carries ``block`` and ``mined`` together; REST then says confirmed."""
    high, low = payment(sim, fee_rate=50), payment(sim, fee_rate=1)
    sim.add(high)
    sim.add(low)
    await sim.flush()
    async with client(
        sim, {"action": "want", "data": ["blocks", "stats"]}, {"track-mempool": True}
    ) as ws:
        block = await sim.mine([high["txid"]])
        frame = await recv(ws)
    assert frame["block"] == block
    assert {"mempoolInfo", "fees"} <= frame.keys()
    delta = frame["mempool-transactions"]
    assert delta["added"] == delta["removed"] == []
    assert delta["mined"][1:] == [high["txid"]]
    assert len(delta["mined"]) == block["tx_count"] == 2
    assert block["height"] == sim.tip_height and block["stale"] is False
    assert {"totalFees", "medianFee", "feeRange", "reward", "pool"} <= block["extras"].keys()
    assert high["txid"] not in sim.mempool and low["txid"] in sim.mempool
    async with httpx.AsyncClient(base_url=sim.url) as http:
        status = (await http.get(f"/api/tx/{high['txid']}/status")).json()
        assert status == {
            "confirmed": True,
            "block_height": block["height"],
            "block_hash": block["id"],
            "block_time": block["timestamp"],
        }
        assert (await http.get(f"/api/tx/{low['txid']}/status")).json() == {"confirmed": False}
        assert (await http.get(f"/api/tx/{high['txid']}")).json()["status"]["confirmed"] is True
        txids = (await http.get(f"/api/block/{block['id']}/txids")).json()
        assert txids == delta["mined"]


async def test_default_mine_takes_the_best_fee_rates(sim: SimulatedMempool) -> None:
    """Without txids a block takes the highest fee rates up to about 1 MvB."""
    txs = [payment(sim, fee_rate=1 + i, vsize=100_000) for i in range(12)]
    for tx in txs:
        sim.add(tx)
    block = await sim.mine()
    assert block["tx_count"] == 10
    assert {t["txid"] for t in txs[:3]} == set(sim.mempool)


async def test_block_conflict_is_reported_as_replaced(sim: SimulatedMempool) -> None:
    """A block tx double-spending a mempool tx pairs them in the block's ``replaced``."""
    victim = payment(sim)
    sim.add(victim)
    await sim.flush()
    winner = payment(sim, spends=[(victim["vin"][0]["txid"], victim["vin"][0]["vout"])])
    async with client(sim, {"track-mempool": True}) as ws:
        await sim.mine([winner["txid"]])
        delta = (await recv(ws))["mempool-transactions"]
        assert delta["replaced"][0]["replaced"] == victim["txid"]
        assert delta["replaced"][0]["by"]["txid"] == winner["txid"]
        await sim.flush()
        later = (await recv(ws))["mempool-transactions"]
    assert later["removed"] == [victim["txid"]]


async def test_stale_block_changes_nothing(sim: SimulatedMempool) -> None:
    """A stale block is sent with ``stale: true`` and leaves tip, mempool and sequence alone."""
    tx = payment(sim)
    sim.add(tx)
    sequence = await sim.flush()
    tip = sim.tip_height
    async with client(sim, {"action": "want", "data": ["blocks"]}, {"track-mempool": True}) as ws:
        block = await sim.mine([tx["txid"]], stale=True)
        frame = await recv(ws)
    assert frame == {"block": block}
    assert block["stale"] is True and block["height"] == tip == sim.tip_height
    assert tx["txid"] in sim.mempool and sim.sequence == sequence


async def test_reorg_resends_blocks_and_returns_txs(sim: SimulatedMempool) -> None:
    """A reorg re-sends ``blocks`` with new hashes at the same heights; txs return to mempool."""
    tx = payment(sim)
    sim.add(tx)
    mined = await sim.mine([tx["txid"]])
    async with client(sim, {"action": "want", "data": ["blocks"]}, {"track-mempool": True}) as ws:
        (new,) = await sim.reorg(1)
        frame = await recv(ws)
        assert new["height"] == mined["height"] and new["id"] != mined["id"]
        assert frame["blocks"][-1] == new
        await sim.flush()
        delta = (await recv(ws))["mempool-transactions"]
    assert [t["txid"] for t in delta["added"]] == [tx["txid"]]
    assert delta["added"][0]["status"] == {"confirmed": False}
    async with httpx.AsyncClient(base_url=sim.url) as http:
        assert (await http.get(f"/api/tx/{tx['txid']}/status")).json() == {"confirmed": False}


async def test_skip_sequence_makes_a_jump(sim: SimulatedMempool) -> None:
    """Lost messages show as a sequence jump in the next delta."""
    async with client(sim, {"track-mempool": True}) as ws:
        sim.add(payment(sim))
        first = await sim.flush()
        sim.skip_sequence(3)
        sim.add(payment(sim))
        await sim.flush()
        sequences = [(await recv(ws))["mempool-transactions"]["sequence"] for _ in range(2)]
    assert sequences == [first, first + 4]


async def test_out_of_sync_repeats_the_sequence(sim: SimulatedMempool) -> None:
    """Out of sync, deltas keep flowing with the same sequence and fees answer 503."""
    async with client(sim, {"track-mempool": True}) as ws:
        sim.add(payment(sim))
        first = await sim.flush()
        sim.set_in_sync(False)
        for _ in range(2):
            sim.add(payment(sim))
            await sim.flush()
        sequences = [(await recv(ws))["mempool-transactions"]["sequence"] for _ in range(3)]
        async with httpx.AsyncClient(base_url=sim.url) as http:
            assert (await http.get("/api/v1/fees/recommended")).status_code == 503
        sim.set_in_sync(True)
        assert await sim.flush() == first  # nothing changed: nothing sent
    assert sequences == [first] * 3


async def test_drop_connections_closes_every_client(sim: SimulatedMempool) -> None:
    """Dropping connections closes each client socket (1001) and new clients can connect."""
    async with client(sim) as one, client(sim) as two:
        assert sim.connections == 2
        await sim.drop_connections()
        async with asyncio.timeout(TIMEOUT):
            await one.wait_closed()
            await two.wait_closed()
        assert one.close_code == two.close_code == 1001
        assert sim.connections == 0
        async with connect(ws_url(sim)):  # a client reconnecting
            async with asyncio.timeout(TIMEOUT):
                await sim.wait_until(lambda s: s.connections == 1)
    assert sim.connection_count == 3


async def test_ping_pong_and_client_messages_are_recorded(sim: SimulatedMempool) -> None:
    """``{"action":"ping"}`` gets ``{"pong": true}`` and every client message is recorded."""
    async with connect(ws_url(sim, "/")) as ws:  # the backend upgrades on any path
        await recv(ws)
        await ws.send('{"action":"ping","extra":1}')
        assert await recv(ws) == {"pong": True}
    assert sim.client_messages == [{"action": "ping", "extra": 1}]


async def test_track_mempool_block_lists_gross_values(sim: SimulatedMempool) -> None:
    """A projected-block subscription returns the full list with gross (change-included) values."""
    tx = sim.make_tx(outputs=[("bc1qpay", 120 * COIN), ("bc1qchange", 30 * COIN)], fee_rate=7.5)
    sim.add(tx)
    await sim.flush()
    async with connect(ws_url(sim)) as ws:
        await recv(ws)
        (frame,) = await send(ws, {"track-mempool-block": 0})
        update = frame["projected-block-transactions"]
        assert update["index"] == 0 and update["sequence"] == sim.sequence
        (entry,) = update["blockTransactions"]
        assert entry == [tx["txid"], 1875, 250.0, 150 * COIN, 7.5, tx["flags"], tx["firstSeen"]]
        other = payment(sim, fee_rate=3)
        sim.add(other)
        await sim.flush()
        delta = (await recv(ws))["projected-block-transactions"]["delta"]
    assert [e[0] for e in delta["added"]] == [other["txid"]]
    assert delta["removed"] == delta["changed"] == []


async def test_oversized_client_frame_closes_with_1009(sim: SimulatedMempool) -> None:
    """A client frame over 50,000 bytes closes the connection with code 1009."""
    async with connect(ws_url(sim)) as ws:
        await recv(ws)
        await ws.send('{"pad":"' + "x" * 60_000 + '"}')
        with pytest.raises(ConnectionClosed):
            await recv(ws)
        assert ws.close_code == 1009


async def test_invalid_json_closes_the_connection(sim: SimulatedMempool) -> None:
    """A frame that is not JSON closes the connection."""
    async with connect(ws_url(sim)) as ws:
        await recv(ws)
        await ws.send("{not json")
        with pytest.raises(ConnectionClosed):
            await recv(ws)
    async with asyncio.timeout(TIMEOUT):
        await sim.wait_until(lambda s: s.connections == 0)


async def test_message_flood_closes_the_connection(sim: SimulatedMempool) -> None:
    """A 101st client message within 10 s closes the connection (1008)."""
    async with connect(ws_url(sim)) as ws:
        await recv(ws)
        for _ in range(101):
            await ws.send('{"track-mempool": true}')
        async with asyncio.timeout(TIMEOUT):
            await ws.wait_closed()
        assert ws.close_code == 1008


# ------------------------------------------------------------------ REST


async def test_rest_429_injection(sim: SimulatedMempool) -> None:
    """``rest_429 = 2`` answers the next two REST requests with 429, then serves normally."""
    sim.rest_429 = 2
    async with httpx.AsyncClient(base_url=sim.url) as http:
        codes = [(await http.get("/api/blocks/tip/height")).status_code for _ in range(3)]
    assert codes == [429, 429, 200]
    assert sim.rest_requests == ["/api/blocks/tip/height"] * 3


async def test_rest_endpoints_answer_like_the_backend(sim: SimulatedMempool) -> None:
    """REST routes give the documented shapes, plain-text tip height and text 404s."""
    tx = payment(sim, btc=200)
    sim.add(tx)
    await sim.flush()
    async with httpx.AsyncClient(base_url=sim.url) as http:
        tip = await http.get("/api/blocks/tip/height")
        assert tip.headers["content-type"].startswith("text/plain")
        assert int(tip.text) == sim.tip_height
        fees = (await http.get("/api/v1/fees/recommended")).json()
        assert all(isinstance(v, int) for v in fees.values())
        assert (await http.get("/api/mempool/txids")).json() == [tx["txid"]]
        assert (await http.get("/api/v1/mempool/txids")).json() == [tx["txid"]]
        summary = (await http.get("/api/mempool")).json()
        assert summary["count"] == 1 and summary["total_fee"] == tx["fee"]
        assert summary["fee_histogram"] == [[10.0, 250]]
        recent = (await http.get("/api/mempool/recent")).json()
        assert recent == [{"txid": tx["txid"], "fee": 2500, "vsize": 250, "value": 200 * COIN}]
        assert len((await http.get("/api/v1/fees/mempool-blocks")).json()) == 1
        esplora = (await http.get(f"/api/tx/{tx['txid']}")).json()
        assert "vsize" not in esplora and esplora["weight"] == tx["weight"]
        assert (await http.get(f"/api/v1/tx/{tx['txid']}")).status_code == 404  # as public
        missing = await http.get("/api/tx/" + "0" * 64)
        assert (missing.status_code, missing.text) == (404, "Transaction not found")
        assert (await http.get("/api/tx/" + "0" * 64 + "/status")).status_code == 404
        assert (await http.get("/api/nope")).status_code == 404
        assert (await http.get("/api/v1/ws")).status_code == 404
        prices = (await http.get("/api/v1/prices")).json()
        assert {"time", "USD", "EUR"} <= prices.keys()
        sim.prices_up = False
        assert (await http.get("/api/v1/prices")).status_code == 503
    sim.remove(tx["txid"])
    assert tx["txid"] not in sim.mempool


# ------------------------------------------------------------------ auto mode and CLI


async def test_auto_mode_streams_polls_and_blocks() -> None:
    """Auto mode starts with a backlog and streams consecutive deltas and blocks on its own."""
    sim = SimulatedMempool(seed=5, tx_rate=200, poll_interval=0.02, block_interval=0.1)
    assert len(sim.mempool) > 5_000
    assert any(tx_value(t) >= 100 * COIN for t in sim.mempool.values())
    await sim.start()
    frames: list[Frame] = []
    try:
        async with client(
            sim, {"action": "want", "data": ["blocks"]}, {"track-mempool": True}
        ) as ws:
            while len(frames) < 4 or not any("block" in f for f in frames):
                # A generous bound: a busy, shared machine can take seconds per auto step.
                frame = await recv_until(ws, lambda f: "mempool-transactions" in f, timeout=30)
                frames.append(frame)
        async with httpx.AsyncClient(base_url=sim.url) as http:
            blocks = (await http.get("/api/v1/fees/mempool-blocks")).json()
    finally:
        await sim.stop()
    sequences = [f["mempool-transactions"]["sequence"] for f in frames]
    assert sequences == list(range(sequences[0], sequences[0] + len(frames)))
    assert any(f["mempool-transactions"]["added"] for f in frames)
    block_frame = next(f for f in frames if "block" in f)
    assert len(block_frame["mempool-transactions"]["mined"]) == block_frame["block"]["tx_count"]
    assert blocks[0]["blockVSize"] > 900_000
    assert sim.connections == 0


@asynccontextmanager
async def sim_process(*args: str, urls: int = 1) -> AsyncIterator[list[str]]:
    """``python -m exporter.sim ARGS``: the URLs it prints; it must exit 0 on SIGINT."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter.sim", "--port", "0", *args, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):  # start-up builds an 8,000-tx backlog
            lines = [(await proc.stdout.readline()).decode() for _ in range(urls)]
        yield [line.split()[3] for line in lines]
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_module_entry_point_serves_until_sigint() -> None:
    """``python -m exporter.sim`` prints its URL, serves REST and exits 0 on SIGINT."""
    async with sim_process("--seed", "2") as (url,):
        assert url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=url) as http:
            assert int((await http.get("/api/blocks/tip/height")).text) > 0


# ------------------------------------------------------------------ issue 11: coverage routes


async def test_txid_list_names_every_mempool_tx(sim: SimulatedMempool) -> None:
    """``/api/mempool/txids`` and ``/api/v1/mempool/txids`` list announced, silent and tail txs."""
    shown, hidden = payment(sim), payment(sim)
    sim.add(shown)
    sim.add_silently(hidden)
    sim.fill_tail(50)
    async with httpx.AsyncClient(base_url=sim.url) as http:
        public = (await http.get("/api/mempool/txids")).json()
        v1 = (await http.get("/api/v1/mempool/txids")).json()
        tail = [t for t in public if t not in (shown["txid"], hidden["txid"])]
        statuses = [(await http.get(f"/api/tx/{t}/status")).json() for t in tail]
    assert sorted(public) == sorted(v1)
    assert len(public) == len(set(public)) == 52
    assert {shown["txid"], hidden["txid"]} <= set(public)
    assert statuses == [{"confirmed": False}] * 50


async def test_block_summary_lists_every_tx_with_gross_value(sim: SimulatedMempool) -> None:
    """``/api/v1/block/:hash/summary`` strips each tx of a block, ``value`` including change."""
    whale = sim.make_tx(outputs=[("bc1qpay", 120 * COIN), ("bc1qchange", 30 * COIN)], fee_rate=8)
    sim.add(whale)
    block = await sim.mine([whale["txid"], "ee" * 32])
    async with httpx.AsyncClient(base_url=sim.url) as http:
        summary = (await http.get(f"/api/v1/block/{block['id']}/summary")).json()
        missing = await http.get(f"/api/v1/block/{'0' * 64}/summary")
    assert [e["txid"] for e in summary][1:] == [whale["txid"], "ee" * 32]
    assert len(summary) == block["tx_count"] == 3
    assert all(
        e.keys() == {"txid", "fee", "vsize", "value", "rate", "flags", "time"} for e in summary
    )
    entry = summary[1]
    assert (entry["value"], entry["fee"], entry["vsize"]) == (150 * COIN, 2_000, 250)
    assert (entry["rate"], entry["time"]) == (8.0, whale["firstSeen"])
    assert entry["flags"] == whale["flags"]
    assert summary[2]["value"] < COIN  # a tx never built reads as a small payment
    assert missing.status_code == 404


async def test_electrs_internal_routes_page_post_and_list_block_txs() -> None:
    """The electrs port pages full txs in txid order (at most 1,000), answers POSTed txids and
    lists a block's txs, all without the ``/api`` prefix."""
    sim = SimulatedMempool(seed=4, auto=False, esplora=True)
    await sim.start()
    try:
        txs = [payment(sim) for _ in range(5)]
        for tx in txs:
            sim.add(tx)
        sim.fill_tail(2_400)
        mined = payment(sim)
        sim.add(mined)
        block = await sim.mine([mined["txid"]])
        async with httpx.AsyncClient(base_url=sim.esplora_url) as http:
            pages: list[list[Frame]] = []
            path = "/internal/mempool/txs"
            while True:
                page = (await http.get(path, params={"max_txs": 5_000})).json()
                if not page:
                    break
                pages.append(page)
                path = f"/internal/mempool/txs/{page[-1]['txid']}"
            posted = await http.post(
                "/internal/mempool/txs", json=[txs[0]["txid"], mined["txid"], "ab" * 32]
            )
            block_txs = (await http.get(f"/internal/block/{block['id']}/txs")).json()
            bad = await http.post("/internal/mempool/txs", content=b"[not json")
            prefixed = await http.get("/api/internal/mempool/txs")
            esplora_tx = (await http.get(f"/tx/{txs[1]['txid']}")).json()
        async with httpx.AsyncClient(base_url=sim.url) as http:
            on_main_port = await http.get("/internal/mempool/txs")
    finally:
        await sim.stop()
    assert [len(p) for p in pages] == [1_000, 1_000, 405]
    txids = [t["txid"] for p in pages for t in p]
    assert txids == sorted(txids) and len(set(txids)) == 2_405
    assert {t["txid"] for t in txs} <= set(txids) and mined["txid"] not in txids
    assert all(t["vin"][0]["prevout"]["value"] > 0 for p in pages for t in p)
    assert all("vsize" not in t and "firstSeen" not in t for p in pages for t in p)
    assert [t["txid"] for t in posted.json()] == [txs[0]["txid"]]
    assert [t["txid"] for t in block_txs][1:] == [mined["txid"]]
    assert block_txs[1]["status"]["block_hash"] == block["id"]
    assert (bad.status_code, prefixed.status_code, on_main_port.status_code) == (400, 404, 404)
    assert esplora_tx["vout"] == txs[1]["vout"]


async def test_prevout_less_stream_but_rest_fills_prevouts() -> None:
    """A bitcoind-backed instance streams ``"prevout": null``; REST gives the prevouts."""
    sim = SimulatedMempool(seed=6, auto=False, stream_prevouts=False)
    await sim.start()
    try:
        old = sim.make_tx(outputs=[("bc1qpay", 10 * COIN), ("bc1qchange", 289 * COIN)])
        async with client(sim, {"track-mempool": True}) as ws:
            sim.add(old)
            await sim.flush()
            added = (await recv(ws))["mempool-transactions"]["added"]
            async with httpx.AsyncClient(base_url=sim.url) as http:
                rest_old = (await http.get(f"/api/tx/{old['txid']}")).json()
            new = sim.make_tx(
                outputs=[("bc1qpay", 10 * COIN)],
                spends=[(old["vin"][0]["txid"], old["vin"][0]["vout"])],
                fee_rate=30,
            )
            sim.replace(old["txid"], new)
            await sim.flush()
            replaced = (await recv(ws))["mempool-transactions"]["replaced"]
        async with httpx.AsyncClient(base_url=sim.url) as http:
            rest_new = (await http.get(f"/api/tx/{new['txid']}")).json()
    finally:
        await sim.stop()
    assert [i["prevout"] for i in added[0]["vin"]] == [None]
    assert replaced[0]["by"]["vin"][0]["prevout"] is None
    assert rest_old["vin"][0]["prevout"] == old["vin"][0]["prevout"]
    assert rest_old["vin"][0]["prevout"]["value"] > 299 * COIN
    assert rest_new["vin"][0]["prevout"] == old["vin"][0]["prevout"]
    assert sim.mempool[new["txid"]]["vin"][0]["prevout"] is not None


async def test_bare_backend_serves_rest_only_under_v1() -> None:
    """A bare backend answers 404 on ``/api/tx/...`` and the tip, and serves them under v1."""
    sim = SimulatedMempool(seed=8, auto=False, backend="bare", stream_prevouts=False)
    await sim.start()
    try:
        tx = payment(sim)
        sim.add(tx)
        block = await sim.mine([])
        txid = tx["txid"]
        async with httpx.AsyncClient(base_url=sim.url) as http:
            gone = [
                (await http.get(p)).status_code
                for p in (f"/api/tx/{txid}", f"/api/tx/{txid}/status", "/api/blocks/tip/height")
            ]
            full = (await http.get(f"/api/v1/tx/{txid}")).json()
            status = (await http.get(f"/api/v1/tx/{txid}/status")).json()
            height = (await http.get("/api/v1/blocks/tip/height")).text
            txids = (await http.get("/api/v1/mempool/txids")).json()
            summary = await http.get(f"/api/v1/block/{block['id']}/summary")
    finally:
        await sim.stop()
    assert gone == [404, 404, 404]
    assert full["vin"][0]["prevout"] == tx["vin"][0]["prevout"] and full["vsize"] == 250
    assert status == {"confirmed": False}
    assert int(height) == block["height"]
    assert txids == [txid]
    assert summary.status_code == 200 and len(summary.json()) == 1


async def test_public_mode_hides_v1_tx_but_serves_rbf(sim: SimulatedMempool) -> None:
    """As on mempool.space, ``/api/v1/tx/:txid`` is 404 while ``/api/v1/tx/:txid/rbf`` answers."""
    old = payment(sim)
    sim.add(old)
    new = payment(sim, spends=[(old["vin"][0]["txid"], old["vin"][0]["vout"])], fee_rate=40)
    sim.replace(old["txid"], new)
    async with httpx.AsyncClient(base_url=sim.url) as http:
        hidden = await http.get(f"/api/v1/tx/{new['txid']}")
        rbf = (await http.get(f"/api/v1/tx/{old['txid']}/rbf")).json()
    assert hidden.status_code == 404
    assert rbf["replacements"]["tx"]["txid"] == new["txid"]


# ------------------------------------------------------------------ scenario helpers


async def test_add_silently_never_reaches_the_stream(sim: SimulatedMempool) -> None:
    """A silently added tx is in the mempool and on REST but in no ``added`` list."""
    quiet, loud = payment(sim), payment(sim)
    async with client(sim, {"track-mempool": True}) as ws:
        sim.add_silently(quiet)
        sim.add(loud)
        await sim.flush()
        added = (await recv(ws))["mempool-transactions"]["added"]
    async with httpx.AsyncClient(base_url=sim.url) as http:
        served = (await http.get(f"/api/tx/{quiet['txid']}")).status_code
    assert [t["txid"] for t in added] == [loud["txid"]]
    assert quiet["txid"] in sim.mempool and served == 200


async def test_bury_puts_a_whale_below_every_projected_list(sim: SimulatedMempool) -> None:
    """After ``bury`` a lower-fee whale is in no projected-block list, though in the mempool."""
    fillers = sim.bury()
    whale = payment(sim, btc=500, fee_rate=2)
    sim.add_silently(whale)
    await sim.flush()
    listed: set[str] = set()
    async with connect(ws_url(sim), max_size=None) as ws:
        await recv(ws)
        for index in range(8):
            (frame,) = await send(ws, {"track-mempool-block": index})
            update = frame["projected-block-transactions"]
            listed |= {e[0] for e in update["blockTransactions"]}
    assert len(fillers) == 180 and whale["txid"] in sim.mempool
    assert listed and listed <= set(fillers)
    assert whale["txid"] not in listed


async def test_mine_a_whale_that_never_entered_the_mempool(sim: SimulatedMempool) -> None:
    """``mine(unseen=[tx])`` confirms a tx no client was ever told of; REST knows it."""
    whale = payment(sim, btc=300)
    async with client(sim, {"track-mempool": True}) as ws:
        block = await sim.mine([], unseen=[whale])
        delta = (await recv(ws))["mempool-transactions"]
    async with httpx.AsyncClient(base_url=sim.url) as http:
        status = (await http.get(f"/api/tx/{whale['txid']}/status")).json()
        summary = (await http.get(f"/api/v1/block/{block['id']}/summary")).json()
    assert delta["added"] == [] and delta["mined"][1:] == [whale["txid"]]
    assert whale["txid"] not in sim.mempool
    assert status["block_hash"] == block["id"]
    assert summary[1]["value"] == 300 * COIN


async def test_rest_counts_and_injected_faults(sim: SimulatedMempool) -> None:
    """Per-route counters see every request; faults answer 429 + Retry-After, 500, or hang."""
    tx = payment(sim)
    sim.add(tx)
    path = f"/api/tx/{tx['txid']}"
    sim.fail("/api/tx/:txid", 429, retry_after=7, times=1)
    sim.fail("/api/blocks/tip/height", 500)
    async with httpx.AsyncClient(base_url=sim.url) as http:
        limited, served = await http.get(path), await http.get(path)
        broken = await http.get("/api/blocks/tip/height")
        sim.fail(path, hang=True)
        hanging = asyncio.create_task(http.get(path))
        async with asyncio.timeout(TIMEOUT):
            await sim.wait_until(lambda s: s.rest_calls("/api/tx/:txid") == 3)
        assert not hanging.done()
        sim.clear_faults()
        released = await hanging
        healed = await http.get("/api/blocks/tip/height")
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "7")
    assert served.json()["txid"] == tx["txid"]
    assert (broken.status_code, released.status_code, healed.status_code) == (500, 503, 200)
    assert sim.rest_calls("/api/tx/:txid") == 3
    assert sim.rest_calls("/api/blocks/tip/height") == 2


async def test_flapping_accepts_then_closes_at_once(sim: SimulatedMempool) -> None:
    """In flapping mode every WebSocket is accepted and closed straight away (1001)."""
    sim.flapping = True
    for _ in range(2):
        async with connect(ws_url(sim)) as ws:
            async with asyncio.timeout(TIMEOUT):
                await ws.wait_closed()
            assert ws.close_code == 1001
    sim.flapping = False
    async with client(sim) as ws:
        assert sim.connections == 1
    assert sim.connection_count == 3


def test_fill_tail_builds_a_large_mempool_in_little_memory() -> None:
    """50,000 tail txs take about 2 MB: 32 bytes of txid and 8 of order each, bodies on demand."""
    sim = SimulatedMempool(seed=2, auto=False)
    tracemalloc.start()
    try:
        sim.fill_tail(50_000, whale_every=10_000)
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept < 3_000_000
    txids = sim.model.txids_after(None, 5)
    assert all(len(t) == 64 for t in txids) and txids == sorted(txids)
    bodies = [sim.model.lookup(t) for t in sim.model.all_txids()[:20_000]]
    whales = [b for b in bodies if b and tx_value(b) >= 100 * COIN]
    assert len(whales) == 2 and all(b and b["fee"] / b["vsize"] < 2 for b in bodies)


async def test_module_entry_point_plays_a_bare_backend_with_electrs() -> None:
    """``--backend bare --esplora`` serves REST under /api/v1/ only, and an electrs port."""
    args = ("--backend", "bare", "--no-prevouts", "--esplora", "--tail", "1500")
    async with sim_process(*args, urls=2) as (url, electrs):
        async with httpx.AsyncClient(base_url=url) as http:
            assert int((await http.get("/api/v1/blocks/tip/height")).text) > 0
            assert (await http.get("/api/blocks/tip/height")).status_code == 404
            assert len((await http.get("/api/v1/mempool/txids")).json()) > 1_500  # + backlog
        async with httpx.AsyncClient(base_url=electrs) as http:
            assert len((await http.get("/internal/mempool/txs")).json()) == 1_000
