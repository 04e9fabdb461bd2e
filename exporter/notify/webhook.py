"""Signed webhooks: each whale event POSTed as JSON, signed like Stripe's and GitHub's.

    X-Whale-Timestamp: <unix seconds>
    X-Whale-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" under the secret>

A receiver recomputes the signature over the raw body and refuses old timestamps, so it can
prove that an alert came from its exporter and is fresh. Webhooks are destinations like the
Apprise ones (tag `webhook`): the same rules, dedup, rate windows, backlog, retries and records.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from exporter import __version__
from exporter.core.models import Signal
from exporter.notify.delivery import Attempt
from exporter.notify.outgoing import Outgoing

TAG = "webhook"
TIMESTAMP_HEADER = "X-Whale-Timestamp"
SIGNATURE_HEADER = "X-Whale-Signature"
RETRY_STATUSES = frozenset({408, 425, 429})
ToJson = Callable[[Signal], Mapping[str, Any]]


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp`."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: bytes, timestamp: str, signature: str, body: bytes) -> bool:
    """Whether `signature` signs `body` at `timestamp` (constant-time comparison)."""
    if not timestamp.isdigit():
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


def plain_json(signal: Signal) -> dict[str, Any]:
    """A signal's fields as JSON values (the HTTP API's shape is passed in by the app)."""
    return {
        "txid": signal.txid,
        "chain_id": signal.chain_id,
        "value_btc": signal.value_btc,
        "flow": signal.flow.value,
        "entity": signal.entity,
        "status": signal.status.value,
        "fee_rate": signal.fee_rate,
        "urgency_level": signal.urgency_level.value,
        "urgency_score": signal.urgency_score,
        "predicted_blocks": signal.predicted_blocks,
        "block_height": signal.block_height,
    }


def body(out: Outgoing, to_json: ToJson = plain_json) -> bytes:
    """The JSON body of one message: its kind, text, and the whale of each alert it carries."""
    items = ",".join(f"{chain}:{txid}" for chain, txid in out.items)
    ident = hashlib.sha256(f"{out.tag}|{out.kind}|{out.created_at!r}|{items}".encode())
    return orjson.dumps(
        {
            "id": ident.hexdigest()[:32],
            "kind": out.kind,
            "reason": out.reason or None,
            "title": out.title,
            "text": out.body,
            "count": out.count,
            "events": [
                {"kind": notice.kind.value, "whale": dict(to_json(notice.signal))}
                for notice in out.notices
            ],
        }
    )


@dataclass(eq=False, slots=True)
class WebhookDestination:
    """One webhook URL. The client is shared; the URL and the secret never leave this object."""

    name: str
    url: str
    secret: bytes
    client: httpx.AsyncClient
    to_json: ToJson = plain_json
    clock: Callable[[], float] = time.time
    tags: tuple[str, ...] = (TAG,)

    async def send(self, out: Outgoing, timeout: float) -> Attempt:  # noqa: ASYNC109
        content = body(out, self.to_json)
        timestamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"mempool-whale-exporter/{__version__}",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self.secret, timestamp, content),
        }
        try:
            async with asyncio.timeout(timeout):
                response = await self.client.post(self.url, content=content, headers=headers)
        except TimeoutError:
            return Attempt(False, f"timed out after {timeout:g} s", True)
        except httpx.HTTPError as exc:  # its text names the URL: keep only the kind
            return Attempt(False, type(exc).__name__, True)
        status = response.status_code
        if 200 <= status < 300:
            return Attempt(True)
        again = status >= 500 or status in RETRY_STATUSES
        return Attempt(False, f"HTTP {status}", again)
