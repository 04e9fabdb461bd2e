"""The bulk source of self-hosters: the `/internal` routes of the instance's electrs.

mempool/electrs (what self-hosted mempool runs in esplora mode) serves, on its own REST port
and without the `/api` prefix:
- `GET /internal/mempool/txs[/:last_txid]?max_txs=N`: full mempool transactions with
  prevouts, a page after `last_txid` (pages are capped, 1,000 in the implementations seen);
- `POST /internal/mempool/txs`: a JSON array of txids in, those still in the mempool out.

The public site answers 403 there. Errors are translated into `exporter.errors` here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import httpx
import orjson
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from exporter import __version__
from exporter.errors import ExporterError, NotFound, RateLimited, UpstreamError, is_transient

log = logging.getLogger(__name__)
PAGE = 1_000
BATCH = 1_000


class Esplora:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        attempts: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            timeout=timeout,
            headers={"user-agent": f"mempool-whale-exporter/{__version__}"},
            transport=transport,
        )
        self._attempts = attempts

    async def aclose(self) -> None:
        await self._client.aclose()

    async def pages(self, max_txs: int = PAGE) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Every mempool transaction, a page at a time, until an empty page.

        The next page is asked for as soon as this one is read, so electrs works on it while
        the caller examines this one.
        """
        last: str | None = None
        ahead = asyncio.ensure_future(self._page(None, max_txs))
        try:
            while True:
                txs = await ahead
                if not txs or txs[-1]["txid"] == last:  # the end, or a server ignoring the cursor
                    return
                last = txs[-1]["txid"]
                ahead = asyncio.ensure_future(self._page(last, max_txs))
                yield txs
        finally:
            if not ahead.done():
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError, ExporterError):
                    await ahead

    async def _page(self, last: str | None, max_txs: int) -> list[dict[str, Any]]:
        path = "internal/mempool/txs" + (f"/{last}" if last else "")
        page = await self._request("GET", path, params={"max_txs": str(max_txs)})
        return [tx for tx in page if isinstance(tx, dict) and isinstance(tx.get("txid"), str)]

    async def txs(self, txids: Sequence[str]) -> list[dict[str, Any]]:
        """The transactions among `txids` still in the mempool (one request per BATCH txids)."""
        out: list[dict[str, Any]] = []
        for start in range(0, len(txids), BATCH):
            batch = list(txids[start : start + BATCH])
            found = await self._request("POST", "internal/mempool/txs", content=orjson.dumps(batch))
            out.extend(tx for tx in found if isinstance(tx, dict))
        return out

    async def _request(self, method: str, path: str, **kwargs: Any) -> list[Any]:
        retrying = AsyncRetrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential_jitter(multiplier=0.5, max=10),
            stop=stop_after_attempt(self._attempts),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._once(method, path, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, method: str, path: str, **kwargs: Any) -> list[Any]:
        where = f"esplora {method} /internal/mempool/txs"  # never the txid: logs stay short
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise UpstreamError(f"{where}: timed out") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{where}: {type(exc).__name__}") from exc
        status = response.status_code
        if status == 404:
            raise NotFound(f"{where}: 404 (is --esplora-url an electrs REST base?)", status=404)
        if status == 429:
            raise RateLimited(f"{where}: 429")
        if status >= 400:
            raise UpstreamError(f"{where}: HTTP {status}", status=status)
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise UpstreamError(f"{where}: invalid JSON") from None
        if not isinstance(data, list):
            raise UpstreamError(f"{where}: not a JSON array")
        return data
