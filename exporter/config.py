"""Settings: one frozen object built once from flags and `WHALE_*` environment variables.

Flags win over the environment, the environment over defaults. Every problem is reported
together, each on one line naming the flag and the variable; nothing else reads `os.environ`.
"""

from __future__ import annotations

import argparse
import csv
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from exporter.core.addresses import AddressBook
from exporter.core.models import MAX_BTC, SATS_PER_BTC
from exporter.errors import ConfigError

ENV_PREFIX = "WHALE_"
MIN_WEBHOOK_SECRET = 16
DEFAULT_PORT = 9743
MIN_TOKEN_LENGTH = 16
REPEATABLE = {
    "apprise_urls": "--apprise-url",
    "api_tokens": "--api-token",
    "webhook_urls": "--webhook-url",
}
ALIASES = {"web_config_file": ("--web.config.file",)}  # exporter-toolkit's spelling
# Settings that may also come from a file named by WHALE_<NAME>_FILE (Docker and Kubernetes
# secrets), so the value never sits in the environment or on a command line.
SECRETS = ("apprise_urls", "webhook_urls", "webhook_secret", "alertmanager_token", "api_tokens")


class Settings(BaseSettings):
    """Every setting of the exporter, validated at start."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    mempool_url: str = Field(
        "https://mempool.space",
        description="Base URL of a mempool.space instance, network prefix included",
    )
    db: Path = Field(Path("data/whales.duckdb"), description="DuckDB file")
    listen: str = Field(
        f"127.0.0.1:{DEFAULT_PORT}",
        description="HOST:PORT of the HTTP server (loopback by default: see docs/security.md)",
    )
    threshold_btc: float = Field(100.0, gt=0, le=MAX_BTC, description="Whale threshold in BTC")
    threshold_usd: float | None = Field(
        None, gt=0, description="Optional threshold in USD; a whale passes either threshold"
    )
    exchange_addresses: Path | None = Field(
        None, description="CSV file with a header and columns address,entity"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level")
    log_format: Literal["text", "json"] = Field("text", description="Log line format")
    stale_after: float = Field(
        90.0, ge=5, description="Seconds without a frame before the stream counts as stale"
    )
    ping_interval: float = Field(
        30.0, gt=0, description="Seconds of silence before the client pings the server"
    )
    reconnect_min_delay: float = Field(1.0, ge=0, description="Minimum reconnect delay (s)")
    reconnect_max_delay: float = Field(60.0, gt=0, description="Maximum reconnect delay (s)")
    max_frame_mb: int = Field(
        256, ge=1, le=4096, description="Largest stream frame accepted, in MiB"
    )
    backfill: bool = Field(True, description="Recover missed whales after start, reconnect, gap")
    rest_concurrency: int = Field(4, ge=1, le=32, description="Parallel REST requests at most")
    rest_rate: float = Field(
        10.0, gt=0, le=1_000, description="REST requests per second at most (429 pauses them)"
    )
    resync_fetch_limit: int = Field(
        2_000,
        ge=0,
        description="Unknown transactions fetched one by one after a gap, at most (the rest "
        "are counted and left to the block audit)",
    )
    resync_min_interval: float = Field(
        300.0, ge=0, description="Seconds between two downloads of the mempool txid list, at least"
    )
    esplora_url: str | None = Field(
        None,
        description="REST base of the instance's electrs (mempool/electrs), for bulk start-up "
        "and gap recovery through its /internal routes",
    )
    audit: bool = Field(True, description="Audit every new block for whales never seen")
    rest_timeout: float = Field(10.0, gt=0, description="REST request timeout (s)")
    price_refresh: float = Field(60.0, ge=5, description="Seconds between price refreshes")
    max_pending_days: float = Field(
        14.0, gt=0, description="Days pending before a whale is checked for expiry"
    )
    drop_grace: float = Field(
        60.0,
        ge=0,
        description="Seconds a removed whale waits for its replacement before a "
        "REST check may call it dropped",
    )
    check_interval: float = Field(
        10.0, gt=0, description="Seconds between outcome checks and accuracy updates"
    )
    retention_days: int = Field(90, ge=1, description="Days of signals and outcomes kept")
    apprise_urls: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        (), description="Apprise destination URLs (repeatable flag; env: comma/space separated)"
    )
    apprise_config: Path | None = Field(None, description="Apprise config file (YAML or TEXT)")
    alert_rules: Path | None = Field(None, description="Notification routing rules (YAML)")
    notify_rate_per_minute: int = Field(
        10, ge=1, description="Alerts per minute per destination before folding into a digest"
    )
    notify_timeout: float = Field(10.0, gt=0, description="Timeout of one Apprise send (s)")
    notify_retries: int = Field(3, ge=0, le=10, description="Retries of a failed send")
    webhook_urls: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        (),
        description="Signed-webhook URLs: each whale event is POSTed there as signed JSON "
        "(repeatable flag; env: comma/space separated)",
    )
    webhook_secret: SecretStr | None = Field(
        None,
        description="Key of the webhooks' HMAC-SHA256 signature; required with --webhook-url "
        f"(at least {MIN_WEBHOOK_SECRET} characters)",
    )
    alertmanager_token: SecretStr | None = Field(
        None,
        description="Bearer token required on POST /alertmanager "
        f"({MIN_TOKEN_LENGTH}+ printable characters without spaces)",
    )
    web_config_file: Path | None = Field(
        None, description="Web config (exporter-toolkit format): TLS, basic auth, headers"
    )
    api_tokens: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        (), description="Bearer tokens for /api/v1/* (repeatable flag; env: comma/space separated)"
    )
    api_rate_limit: float = Field(
        10.0, gt=0, description="Requests per second per token (or client address) on /api/v1/*"
    )
    api_rate_burst: int = Field(20, ge=1, description="Requests allowed at once above the rate")
    max_connections: int = Field(
        512, ge=8, description="Concurrent HTTP connections and requests; beyond them: 503"
    )
    http_timeout: float = Field(
        10.0, gt=0, description="Seconds for a request head or body, a stalled write, or idling"
    )
    sse_heartbeat: float = Field(
        15.0, gt=0, description="Seconds between heartbeat comments on the whale stream"
    )

    @field_validator("mempool_url", "esplora_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query or fragment")
        return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be HOST:PORT with a port from 0 to 65535")
        return value

    @field_validator("apprise_urls", "api_tokens", "webhook_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part for part in re.split(r"[,\s]+", value) if part)
        return value

    @field_validator("apprise_urls")
    @classmethod
    def _check_apprise(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for url in value:
            if "://" not in url.get_secret_value():
                raise ValueError("each URL must look like scheme://...")
        return value

    @field_validator("api_tokens")
    @classmethod
    def _check_tokens(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        if not all(_token_ok(token) for token in value):
            raise ValueError(
                f"each token must be {MIN_TOKEN_LENGTH}+ printable characters without spaces"
            )
        return value

    @field_validator("alertmanager_token")
    @classmethod
    def _check_relay_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _token_ok(value):
            raise ValueError(f"must be {MIN_TOKEN_LENGTH}+ printable characters without spaces")
        return value

    @field_validator("webhook_urls")
    @classmethod
    def _check_webhooks(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for index, url in enumerate(value, start=1):
            parts = urlsplit(url.get_secret_value())
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"URL #{index} must be an http:// or https:// URL")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _check_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_WEBHOOK_SECRET:
            raise ValueError(f"must be at least {MIN_WEBHOOK_SECRET} characters")
        return value

    @property
    def ws_url(self) -> str:
        """The stream endpoint: `<base>/api/v1/ws`, http→ws and https→wss."""
        scheme, rest = self.mempool_url.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/api/v1/ws"

    @property
    def rest_url(self) -> str:
        """The REST base: `<base>/api`."""
        return f"{self.mempool_url}/api"

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def loopback(self) -> bool:
        """True when the HTTP server listens on a loopback address only."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a host name: assume it is reachable from elsewhere

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def threshold_sats(self) -> int:
        return round(self.threshold_btc * SATS_PER_BTC)

    def explorer_tx_url(self, txid: str) -> str:
        return f"{self.mempool_url}/tx/{txid}"

    def secret_values(self) -> list[str]:
        """Every secret string the settings hold, for the log filter to mask."""
        values: list[str] = []
        for name in SECRETS:
            value = getattr(self, name)
            for secret in value if isinstance(value, tuple) else (value,):
                if secret is not None:
                    values.append(secret.get_secret_value())
        return values


def _token_ok(token: SecretStr) -> bool:
    secret = token.get_secret_value()
    return len(secret) >= MIN_TOKEN_LENGTH and secret.isprintable() and " " not in secret


def flag(field: str) -> str:
    if field in REPEATABLE:
        return REPEATABLE[field]  # repeatable: one value per flag
    return "--" + field.replace("_", "-")


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _describe(error: Mapping[str, Any], from_files: Mapping[str, str]) -> str:
    field = str(error["loc"][0]) if error["loc"] else "?"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"unknown setting {field}"
    source = f" (read from {from_files[field]})" if field in from_files else ""
    return f"{flag(field)} / {env_name(field)}{source}: {message}"


def load(cli: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from flag values (None = not given) and the environment.

    Raises ConfigError whose message holds one line per invalid setting.
    """
    given = {key: value for key, value in cli.items() if value is not None}
    from_files: dict[str, str] = {}  # setting -> the WHALE_<NAME>_FILE it was read from
    problems = _secret_files(os.environ if environ is None else environ, given, from_files)
    if problems:
        raise ConfigError("\n".join(problems))
    try:
        settings = Settings(**given) if environ is None else _with_environ(environ, given)
    except ValidationError as exc:
        raise ConfigError("\n".join(_describe(e, from_files) for e in exc.errors())) from None
    if settings.reconnect_max_delay < settings.reconnect_min_delay:
        problems.append(
            f"{flag('reconnect_max_delay')} / {env_name('reconnect_max_delay')}: "
            f"must be >= {flag('reconnect_min_delay')} ({settings.reconnect_min_delay:g})"
        )
    if settings.ping_interval >= settings.stale_after:
        problems.append(
            f"{flag('ping_interval')} / {env_name('ping_interval')}: must be below "
            f"{flag('stale_after')} ({settings.stale_after:g}), or no ping comes before the "
            "stream is declared stale"
        )
    if settings.webhook_urls and settings.webhook_secret is None:
        problems.append(
            f"{flag('webhook_secret')} / {env_name('webhook_secret')}: required with "
            f"{flag('webhook_urls')}: every webhook is signed"
        )
    for name in ("exchange_addresses", "apprise_config", "alert_rules", "web_config_file"):
        path = getattr(settings, name)
        if path is not None and not path.is_file():
            problems.append(f"{flag(name)} / {env_name(name)}: no such file: {path}")
    if problems:
        raise ConfigError("\n".join(problems))
    return settings


def _secret_files(
    environ: Mapping[str, str], given: dict[str, Any], from_files: dict[str, str]
) -> list[str]:
    """Read each secret named by WHALE_<NAME>_FILE into `given`; a flag still wins."""
    problems = []
    for name in SECRETS:
        variable = env_name(name) + "_FILE"
        if variable not in environ or name in given:
            continue
        if env_name(name) in environ:
            problems.append(f"{variable}: set either {env_name(name)} or {variable}, not both")
            continue
        path = Path(environ[variable])
        try:
            given[name] = path.read_text(encoding="utf-8").strip()
            from_files[name] = variable
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            problems.append(f"{variable}: cannot read {path}: {reason}")
    return problems


def _with_environ(environ: Mapping[str, str], given: dict[str, Any]) -> Settings:
    # Tests pass an explicit environment; pydantic-settings reads os.environ, so swap it in.
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(environ)
        return Settings(**given)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; defaults stay None so the environment can fill them."""
    for name, info in Settings.model_fields.items():
        kwargs: dict[str, Any] = {"default": None, "dest": name}
        help_text = f"{info.description} (env {env_name(name)}; default {info.default!r})"
        if name in REPEATABLE:
            kwargs.update(action="append", metavar=name.split("_")[-1].upper().rstrip("S"))
        elif info.annotation is bool:
            kwargs.update(action=argparse.BooleanOptionalAction)
        else:
            kwargs.update(metavar=name.split("_")[-1].upper())
        parser.add_argument(
            flag(name), *ALIASES.get(name, ()), help=help_text.replace("%", "%%"), **kwargs
        )


def load_address_book(path: Path | None) -> AddressBook:
    """Read `address,entity` CSV (header required, extra columns ignored)."""
    if path is None:
        return AddressBook({})
    setting = f"{flag('exchange_addresses')} / {env_name('exchange_addresses')}"
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip().lower() for name in reader.fieldnames or ()]
            if "address" not in header or "entity" not in header:
                raise ConfigError(f"{setting}: {path} needs a header with address,entity")
            reader.fieldnames = header
            entities: dict[str, str] = {}
            for line, row in enumerate(reader, start=2):
                address = (row.get("address") or "").strip()
                entity = (row.get("entity") or "").strip()
                if not address or not entity:
                    raise ConfigError(f"{setting}: {path} line {line}: empty address or entity")
                entities[address] = entity
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc}") from None
    return AddressBook(entities)
