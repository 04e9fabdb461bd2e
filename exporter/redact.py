"""Secrets out of text: Apprise URLs and tokens never reach logs, records or answers."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

_URL = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]{0,19})://[^\s'\"<>)\]]+")
_HARMLESS = frozenset(
    {"post", "get", "put", "patch", "delete", "head", "upstream", "truncate", "split", "yes",
     "no", "true", "false", "on", "off", "markdown", "html", "text", "json", "localhost",
     "insecure", "ssl", "starttls"}
)  # fmt: skip
MIN_SECRET = 4


def url_secrets(url: str) -> set[str]:
    """The parts of an Apprise URL that may be credentials: all but the scheme.

    Apprise puts tokens anywhere (`tgram://BOT_TOKEN/CHAT`, `discord://ID/TOKEN`,
    `mailto://user:PASSWORD@host`, `json://host/path?+X-Token=T`), so every host, user,
    password, path segment and query value of four characters or more counts.
    """
    found = {url}
    if "://" not in url:
        return found
    try:
        parts = urlsplit(url)
    except ValueError:
        return found
    pieces = [parts.netloc, *re.split(r"[@:]", parts.netloc), *parts.path.split("/")]
    for pair in parts.query.split("&"):
        pieces.append(pair.partition("=")[2])
    pieces.append(parts.fragment)
    for piece in pieces:
        for text in (piece, unquote(piece), unquote(piece.replace("+", " "))):
            if len(text) < MIN_SECRET or text.lower() in _HARMLESS:
                continue
            if text.isdigit() and len(text) <= 5:  # a port: masking it would mangle numbers
                continue
            found.add(text)
    return found


class Redactor:
    """Removes known secret strings from text, and with `mask_urls` every URL after its scheme.

    Apprise's own log lines get `mask_urls`; the exporter's log keeps its (public) URLs and
    masks only the secrets it was told about.
    """

    def __init__(self, secrets: Iterable[str] = (), *, mask_urls: bool = True) -> None:
        self.mask_urls = mask_urls
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        self._secrets.update(s for s in secrets if len(s) >= MIN_SECRET)
        ordered = sorted(self._secrets, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        if self.mask_urls:
            text = _URL.sub(lambda match: f"{match.group(1)}://***", text)
        if self._pattern is not None:
            text = self._pattern.sub("***", text)
        return text


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites each record's message through a Redactor."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a broken format string: let the handler report it
            return True
        clean = self.redact(text)
        if clean != text:
            record.msg, record.args = clean, None
        if record.exc_info:
            trace = logging.Formatter().formatException(record.exc_info)
            clean_trace = self.redact(trace)
            if clean_trace != trace:
                record.exc_info, record.exc_text = None, clean_trace
        return True
