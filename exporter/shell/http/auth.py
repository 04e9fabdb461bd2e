"""Credentials: API bearer tokens and the web config's bcrypt basic-auth users.

Tokens are compared as SHA-256 digests with `hmac.compare_digest`, against every configured
token, so neither the length nor the position of a match leaks through timing. bcrypt costs
about 100 ms by design: it runs on a small thread pool (the event loop never waits on it) and
a verified user/password pair is remembered, so a scraper pays it once, not on every request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import bcrypt

CACHE_SIZE = 1024
_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bcrypt")


@functools.cache
def _dummy_hash() -> bytes:
    """Checked when the user is unknown, so an unknown user costs as much as a wrong password."""
    return bcrypt.hashpw(b"not a password", bcrypt.gensalt(rounds=10))


def _checkpw(password: bytes, hashed: bytes | None) -> bool:
    try:
        return bcrypt.checkpw(password, hashed or _dummy_hash()) and hashed is not None
    except ValueError:  # a password over bcrypt's 72 bytes, for one
        return False


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def credentials(header: str | None, scheme: str) -> str | None:
    """The credentials of an `Authorization: <scheme> <credentials>` header, if it has them."""
    if not header:
        return None
    given, _, value = header.partition(" ")
    if given.lower() != scheme.lower() or not value.strip():
        return None
    return value.strip()


class Tokens:
    """The API's bearer tokens; `match` names the token (by position) without revealing it."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self._digests = [_digest(token) for token in tokens]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def match(self, header: str | None) -> str | None:
        """`token-N` for a valid `Bearer` header, else None."""
        presented = credentials(header, "Bearer")
        if presented is None:
            return None
        digest = _digest(presented)
        found = None
        for index, known in enumerate(self._digests):
            if hmac.compare_digest(digest, known) and found is None:
                found = f"token-{index + 1}"
        return found


class BasicAuth:
    """bcrypt-hashed users of the web config; successful checks are cached."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = {user: hashed.encode() for user, hashed in users.items()}
        self._verified: OrderedDict[bytes, None] = OrderedDict()

    def __bool__(self) -> bool:
        return bool(self._users)

    async def check(self, header: str | None) -> bool:
        encoded = credentials(header, "Basic")
        if encoded is None:
            return False
        try:
            user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        if not sep:
            return False
        hashed = self._users.get(user)
        key = hashlib.sha256(b"\0".join((user.encode(), password.encode(), hashed or b""))).digest()
        if hashed is not None and key in self._verified:
            self._verified.move_to_end(key)
            return True
        loop = asyncio.get_running_loop()
        if await loop.run_in_executor(_pool, _checkpw, password.encode(), hashed):
            self._verified[key] = None
            if len(self._verified) > CACHE_SIZE:
                self._verified.popitem(last=False)
            return True
        return False
