"""REST client for a mempool.space instance: bounded concurrency, retries, 429 respected.

httpx errors and status codes are translated here into `exporter.errors`; the retry decision
is `errors.is_transient`, the delay honours `Retry-After`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from exporter import __version__
from exporter.core.known import TxidScanner
from exporter.core.models import TxStatus
from exporter.errors import NotFound, RateLimited, UpstreamError, is_transient
from exporter.shell.budget import Budget

log = logging.getLogger(__name__)
MAX_RETRY_AFTER = 60.0
DEFAULT_PAUSE = 5.0  # after a 429 without Retry-After


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return min(float(value), MAX_RETRY_AFTER)
    except ValueError:
        return None


class MempoolRest:
    """GET requests against `<mempool-url>/api`, at most `concurrency` at once.

    The esplora routes (`tx/...`, `blocks/tip/height`, `mempool/txids`, `block/...`) live
    under `/api/` on the public site and behind mempool's nginx, but only under `/api/v1/` on a
    bare backend: on a 404 the other prefix is tried once, and the first prefix that answers
    is kept. Every request spends one token of the `budget`; a 429 pauses the budget.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        concurrency: int = 4,
        attempts: int = 4,
        backoff: Callable[[RetryCallState], float] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        budget: Budget | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            timeout=timeout,
            headers={"user-agent": f"mempool-whale-exporter/{__version__}"},
            limits=httpx.Limits(max_connections=concurrency),
            transport=transport,
            follow_redirects=True,
        )
        self._slots = asyncio.Semaphore(concurrency)
        self._attempts = attempts
        self._backoff = backoff or wait_exponential_jitter(multiplier=0.5, max=30)
        self.budget = budget
        self.esplora_prefix = ""  # "" (public site, nginx) or "v1/" (a bare backend)
        self._prefix_settled = False

    async def aclose(self) -> None:
        await self._client.aclose()

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return exc.retry_after
        return self._backoff(state)

    async def get(self, path: str) -> httpx.Response:
        """GET with retries of transient failures; raises NotFound, RateLimited, UpstreamError.

        `path` is relative to `/api/`; an esplora route may be served from `/api/v1/`.
        """
        if path.startswith("v1/"):
            return await self._retrying(path)
        first = self.esplora_prefix
        try:
            response = await self._retrying(first + path)
        except NotFound:
            if self._prefix_settled:
                raise
            other = "" if first else "v1/"
            response = await self._retrying(other + path)  # a second 404 is a real one
            self.esplora_prefix = other
            log.info("REST: esplora routes answer under /api/%s", other)
        self._prefix_settled = True
        return response

    async def _retrying(self, path: str) -> httpx.Response:
        retrying = AsyncRetrying(
            retry=retry_if_exception(is_transient),
            wait=self._wait,
            stop=stop_after_attempt(self._attempts),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._get_once(path)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _get_once(self, path: str) -> httpx.Response:
        if self.budget is not None:
            await self.budget.acquire()
        async with self._slots:
            try:
                response = await self._client.get(path.lstrip("/"))
            except httpx.TimeoutException as exc:
                raise UpstreamError(f"GET {path}: timed out") from exc
            except httpx.HTTPError as exc:
                raise UpstreamError(f"GET {path}: {type(exc).__name__}") from exc
        self._check(path, response)
        return response

    def _check(self, path: str, response: httpx.Response) -> None:
        status = response.status_code
        if status == 404:
            raise NotFound(f"GET {path}: 404", status=404)
        if status == 429:
            retry_after = _retry_after(response)
            if self.budget is not None:
                self.budget.pause(retry_after if retry_after is not None else DEFAULT_PAUSE)
            raise RateLimited(f"GET {path}: 429", retry_after=retry_after)
        if status >= 400:
            raise UpstreamError(f"GET {path}: HTTP {status}", status=status)

    async def mempool_txids(self, consume: Callable[[list[str]], None]) -> None:
        """Stream `mempool/txids` (about 47 MB at 700k txs) to `consume`, a few at a time.

        The body is never held whole. No retries (the resync tries again later), but a 404
        tries the other prefix once, like `get`.
        """
        for attempt in range(2):
            try:
                await self._stream(self.esplora_prefix + "mempool/txids", consume)
            except NotFound:
                if self._prefix_settled or attempt:
                    raise
                self.esplora_prefix = "" if self.esplora_prefix else "v1/"
                continue
            self._prefix_settled = True
            return

    async def _stream(self, path: str, consume: Callable[[list[str]], None]) -> None:
        if self.budget is not None:
            await self.budget.acquire()
        scanner = TxidScanner()
        async with self._slots:
            try:
                async with self._client.stream("GET", path) as response:
                    self._check(path, response)
                    async for chunk in response.aiter_bytes(2**16):
                        consume(scanner.feed(chunk))
            except httpx.TimeoutException as exc:
                raise UpstreamError(f"GET {path}: timed out") from exc
            except httpx.HTTPError as exc:
                raise UpstreamError(f"GET {path}: {type(exc).__name__}") from exc

    async def block_summary(self, block_hash: str) -> list[dict[str, Any]]:
        """`/api/v1/block/:hash/summary`: every tx of a block as {txid, fee, vsize, value, ...}."""
        data = await self.json(f"v1/block/{block_hash}/summary")
        if not isinstance(data, list):
            raise UpstreamError(f"GET v1/block/{block_hash}/summary: not a list")
        return [entry for entry in data if isinstance(entry, dict)]

    async def blocks_at(self, height: int) -> list[dict[str, Any]]:
        """`/api/v1/blocks/:height`: the blocks at and below `height` (15), highest first."""
        data = await self.json(f"v1/blocks/{height}")
        if not isinstance(data, list):
            raise UpstreamError(f"GET v1/blocks/{height}: not a list")
        return [block for block in data if isinstance(block, dict)]

    async def json(self, path: str) -> Any:
        response = await self.get(path)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise UpstreamError(f"GET {path}: invalid JSON") from None

    async def tx(self, txid: str) -> dict[str, Any]:
        data = await self.json(f"tx/{txid}")
        if not isinstance(data, dict):
            raise UpstreamError(f"GET tx/{txid}: not an object")
        return data

    async def tx_status(self, txid: str) -> TxStatus:
        try:
            data = await self.json(f"tx/{txid}/status")
        except NotFound:
            return TxStatus(found=False)
        if not isinstance(data, dict) or not isinstance(data.get("confirmed"), bool):
            raise UpstreamError(f"GET tx/{txid}/status: unexpected shape")
        height = data.get("block_height")
        block_time = data.get("block_time")
        block_hash = data.get("block_hash")
        return TxStatus(
            found=True,
            confirmed=data["confirmed"],
            block_height=height if isinstance(height, int) else None,
            block_hash=block_hash if isinstance(block_hash, str) else None,
            block_time=float(block_time) if isinstance(block_time, int | float) else None,
        )

    async def replacement_of(self, txid: str) -> str | None:
        """The newest transaction that replaced `txid` (RBF), from `/v1/tx/:txid/rbf`."""
        try:
            data = await self.json(f"v1/tx/{txid}/rbf")
        except NotFound:
            return None
        tree = data.get("replacements") if isinstance(data, dict) else None
        tx = tree.get("tx") if isinstance(tree, dict) else None
        tip = tx.get("txid") if isinstance(tx, dict) else None
        return tip if isinstance(tip, str) and tip != txid else None

    async def tip_height(self) -> int:
        response = await self.get("blocks/tip/height")
        text = response.text.strip()
        if not text.isdigit():
            raise UpstreamError("GET blocks/tip/height: not an integer")
        return int(text)

    async def recommended_fees(self) -> Any:
        return await self.json("v1/fees/recommended")

    async def mempool_blocks(self) -> Any:
        return await self.json("v1/fees/mempool-blocks")

    async def price_usd(self) -> float | None:
        """Current USD price; None when the instance does not know it (-1)."""
        data = await self.json("v1/prices")
        usd = data.get("USD") if isinstance(data, dict) else None
        if isinstance(usd, int | float) and not isinstance(usd, bool) and usd > 0:
            return float(usd)
        return None
