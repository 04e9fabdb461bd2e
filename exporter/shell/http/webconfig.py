"""The web config file, in the Prometheus exporter-toolkit format.

    tls_server_config:            # optional: serve HTTPS
      cert_file: server.crt
      key_file: server.key
      client_ca_file: ca.crt      # optional: verify client certificates against this CA
      client_auth_type: RequireAndVerifyClientCert
      min_version: TLS12
    http_server_config:
      headers: {Strict-Transport-Security: max-age=31536000}
    basic_auth_users:             # bcrypt hashes (htpasswd -nBC 10 "" | tr -d ':')
      prometheus: $2y$10$...

Relative paths are read from the file's directory, as exporter-toolkit does. `load` raises a
ConfigError of one line naming the setting; `TlsReloader` applies a new file's certificates to
the live SSL context, so a SIGHUP renews them without dropping a connection.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import bcrypt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from exporter.config import env_name, flag
from exporter.errors import ConfigError

SETTING = f"{flag('web_config_file')} / {env_name('web_config_file')}"
VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# exporter-toolkit's client_auth_type values that Python's ssl module can honour.
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# The headers exporter-toolkit lets http_server_config set.
HEADERS = frozenset(
    {
        "strict-transport-security",
        "x-content-type-options",
        "x-frame-options",
        "x-xss-protection",
        "content-security-policy",
    }
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(_Strict):
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: Literal[
        "NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"
    ] = "NoClientCert"
    min_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS12"
    max_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] | None = None


class HttpServerConfig(_Strict):
    headers: dict[str, str] = Field(default_factory=dict)
    http2: bool = True  # accepted for compatibility; uvicorn speaks HTTP/1.1

    @field_validator("headers")
    @classmethod
    def _allowed(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name.lower() not in HEADERS:
                raise ValueError(f"header {name} cannot be set (allowed: {', '.join(HEADERS)})")
        return value


class _File(_Strict):
    tls_server_config: TlsConfig | None = None
    http_server_config: HttpServerConfig = Field(default_factory=HttpServerConfig)
    basic_auth_users: dict[str, str] = Field(default_factory=dict)

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt(cls, value: dict[str, str]) -> dict[str, str]:
        for user, hashed in value.items():
            if ":" in user or not user:
                raise ValueError(f"user {user!r}: a user name must be non-empty, without ':'")
            try:
                bcrypt.checkpw(b"", hashed.encode())
            except ValueError:
                raise ValueError(f"user {user}: the password is not a bcrypt hash") from None
        return value


@dataclass(frozen=True)
class WebConfig:
    """What the file asks for; the empty config (no file) serves plain HTTP to anyone."""

    tls: TlsConfig | None = None
    users: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def load(path: Path | None) -> WebConfig:
    """Read and check the file, TLS files included; raises ConfigError (one line)."""
    if path is None:
        return WebConfig()
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{SETTING}: cannot read {path}: {_first_line(exc)}") from None
    try:
        parsed = _File.model_validate(raw or {})
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "file"
        message = str(error["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{SETTING}: {path}: {where}: {message}") from None
    tls = parsed.tls_server_config
    if tls is not None:
        tls = _resolved(tls, path.parent)
        try:
            context(tls)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"{SETTING}: {path}: tls_server_config: {_first_line(exc)}") from None
    return WebConfig(tls, parsed.basic_auth_users, parsed.http_server_config.headers)


def _resolved(tls: TlsConfig, base: Path) -> TlsConfig:
    def at(p: Path | None) -> Path | None:
        return None if p is None else base / p

    changes = {"cert_file": at(tls.cert_file), "key_file": at(tls.key_file),
               "client_ca_file": at(tls.client_ca_file)}  # fmt: skip
    if tls.client_auth_type != "NoClientCert" and tls.client_ca_file is None:
        raise ConfigError(
            f"{SETTING}: client_auth_type {tls.client_auth_type} needs client_ca_file"
        )
    return tls.model_copy(update=changes)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def context(tls: TlsConfig, into: ssl.SSLContext | None = None) -> ssl.SSLContext:
    """A server SSL context for `tls`, or `into` updated in place (new handshakes use it)."""
    ctx = into or ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    ctx.minimum_version = VERSIONS[tls.min_version]
    ctx.maximum_version = (
        VERSIONS[tls.max_version] if tls.max_version else ssl.TLSVersion.MAXIMUM_SUPPORTED
    )
    if tls.client_ca_file is not None:
        ctx.load_verify_locations(cafile=str(tls.client_ca_file))
    ctx.verify_mode = CLIENT_AUTH[tls.client_auth_type]
    return ctx
