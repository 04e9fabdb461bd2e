"""Settings from flags and the environment, and the address book (no process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import load, load_address_book
from exporter.errors import ConfigError


def test_every_problem_is_reported_together() -> None:
    """Several bad settings are all named, one line each."""
    with pytest.raises(ConfigError) as info:
        load({"threshold_btc": -1, "retention_days": 0}, environ={"WHALE_STALE_AFTER": "x"})
    lines = str(info.value).splitlines()
    assert len(lines) == 3
    assert any("--stale-after / WHALE_STALE_AFTER" in line for line in lines)


def test_flags_override_environment() -> None:
    """A flag wins over the environment, which wins over the default."""
    settings = load({"threshold_btc": 250}, environ={"WHALE_THRESHOLD_BTC": "500",
                                                    "WHALE_DB": "/tmp/x.duckdb"})  # fmt: skip
    assert settings.threshold_btc == 250
    assert str(settings.db) == "/tmp/x.duckdb"


def test_urls_derive_from_the_base() -> None:
    """The WebSocket and REST URLs follow the base URL, network prefix included."""
    settings = load({"mempool_url": "https://mempool.space/testnet4/"}, environ={})
    assert settings.ws_url == "wss://mempool.space/testnet4/api/v1/ws"
    assert settings.rest_url == "https://mempool.space/testnet4/api"
    local = load({"mempool_url": "http://10.0.0.5:8999"}, environ={})
    assert local.ws_url == "ws://10.0.0.5:8999/api/v1/ws"


def test_resync_and_esplora_settings_are_checked() -> None:
    """A bad esplora URL, REST rate or fetch limit is named by its flag and variable."""
    with pytest.raises(ConfigError) as info:
        load({"esplora_url": "ftp://electrs:3000", "rest_rate": 0},
             environ={"WHALE_RESYNC_FETCH_LIMIT": "-1"})  # fmt: skip
    text = str(info.value)
    for setting in ("--esplora-url / WHALE_ESPLORA_URL", "--rest-rate / WHALE_REST_RATE",
                    "--resync-fetch-limit / WHALE_RESYNC_FETCH_LIMIT"):  # fmt: skip
        assert setting in text
    ok = load({"esplora_url": "http://electrs:3000/"}, environ={})
    assert ok.esplora_url == "http://electrs:3000"


def test_apprise_urls_from_env_are_split() -> None:
    """WHALE_APPRISE_URLS takes URLs separated by commas or whitespace."""
    settings = load({}, environ={"WHALE_APPRISE_URLS": "json://a/b, mailto://u:p@h\ntgram://x/y"})
    assert len(settings.apprise_urls) == 3
    assert "u:p" not in repr(settings)


def test_address_book_csv(tmp_path: Path) -> None:
    """The exchange CSV needs address,entity in its header; extra columns are ignored."""
    good = tmp_path / "good.csv"
    good.write_text("entity,address,source\nBinance,bc1qa,por-2024\nKraken,3Kx,por\n")
    assert load_address_book(good).entities == {"bc1qa": "Binance", "3Kx": "Kraken"}
    bad = tmp_path / "bad.csv"
    bad.write_text("addr,name\nx,y\n")
    with pytest.raises(ConfigError, match="--exchange-addresses"):
        load_address_book(bad)


def test_secrets_can_come_from_files(tmp_path: Path) -> None:
    """WHALE_<NAME>_FILE supplies a secret from a file, trailing newline stripped, flag first."""
    relay = tmp_path / "relay-token"
    relay.write_text("relay-token-0123456789\n", encoding="utf-8")
    tokens = tmp_path / "api-tokens"
    tokens.write_text("bot-token-0123456789\ngrafana-token-0123456789\n", encoding="utf-8")
    environ = {"WHALE_ALERTMANAGER_TOKEN_FILE": str(relay), "WHALE_API_TOKENS_FILE": str(tokens)}
    settings = load({}, environ=environ)
    assert settings.alertmanager_token is not None
    assert settings.alertmanager_token.get_secret_value() == "relay-token-0123456789"
    assert [t.get_secret_value() for t in settings.api_tokens] == [
        "bot-token-0123456789",
        "grafana-token-0123456789",
    ]
    assert "relay-token-0123456789" in settings.secret_values()
    flagged = load({"alertmanager_token": "flag-token-0123456789"}, environ=environ)
    assert flagged.alertmanager_token is not None
    assert flagged.alertmanager_token.get_secret_value() == "flag-token-0123456789"


def test_secret_file_problems_are_one_line_each(tmp_path: Path) -> None:
    """A missing secret file, or a file next to the plain variable, is named on one line."""
    environ = {
        "WHALE_ALERTMANAGER_TOKEN_FILE": str(tmp_path / "missing"),
        "WHALE_WEBHOOK_SECRET_FILE": str(tmp_path / "also-missing"),
        "WHALE_WEBHOOK_SECRET": "webhook-secret-0123456789",
    }
    with pytest.raises(ConfigError) as info:
        load({}, environ=environ)
    lines = str(info.value).splitlines()
    assert lines == [
        "WHALE_WEBHOOK_SECRET_FILE: set either WHALE_WEBHOOK_SECRET or "
        "WHALE_WEBHOOK_SECRET_FILE, not both",
        f"WHALE_ALERTMANAGER_TOKEN_FILE: cannot read {tmp_path / 'missing'}: "
        "No such file or directory",
    ]


def test_a_short_relay_token_is_refused(tmp_path: Path) -> None:
    """The relay token needs the same length as the API tokens, so a guessable one fails, and
    the line names the file it came from."""
    with pytest.raises(ConfigError, match="--alertmanager-token / WHALE_ALERTMANAGER_TOKEN:"):
        load({"alertmanager_token": "short"}, environ={})
    short = tmp_path / "token"
    short.write_text("short\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load({}, environ={"WHALE_ALERTMANAGER_TOKEN_FILE": str(short)})
    assert str(info.value) == (
        "--alertmanager-token / WHALE_ALERTMANAGER_TOKEN (read from "
        "WHALE_ALERTMANAGER_TOKEN_FILE): must be 16+ printable characters without spaces"
    )
