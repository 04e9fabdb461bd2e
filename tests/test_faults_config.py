"""The bad-configuration matrix, through the real command: one line per problem, status 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

PROG = "mempool-whale-exporter: config error: "


# Should a case ever be accepted, the process stays on loopback and off the internet.
CONTAINED = {
    "WHALE_LISTEN": "127.0.0.1:0",
    "WHALE_MEMPOOL_URL": "http://127.0.0.1:9",
    "WHALE_DB": str(Path(tempfile.gettempdir()) / "test-faults-config.duckdb"),
}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WHALE_")}
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        env={**clean, **CONTAINED, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "env", "names"),
    [
        (["--treshold-btc", "5"], {}, ["unknown flag --treshold-btc", "--help"]),
        (["--listen=127.0.0.1:0", "--bogus=1"], {}, ["unknown flag --bogus", "--help"]),
        (["--threshold-btc"], {}, ["--threshold-btc", "expected one argument"]),
        (["serve"], {}, ["'serve'", "run", "demo"]),
        (["--ping-interval", "90"], {}, ["--ping-interval / WHALE_PING_INTERVAL", "--stale-after"]),
        ([], {"WHALE_PING_INTERVAL": "20", "WHALE_STALE_AFTER": "10"},
         ["--ping-interval / WHALE_PING_INTERVAL", "--stale-after (10)"]),
        (["--reconnect-min-delay", "9", "--reconnect-max-delay", "3"], {},
         ["--reconnect-max-delay / WHALE_RECONNECT_MAX_DELAY"]),
        ([], {"WHALE_STALE_AFTER": "soon"}, ["--stale-after / WHALE_STALE_AFTER"]),
        (["--max-frame-mb", "0"], {}, ["--max-frame-mb / WHALE_MAX_FRAME_MB"]),
    ],
)  # fmt: skip
def test_one_line_per_configuration_problem(
    args: list[str], env: dict[str, str], names: list[str]
) -> None:
    """Each bad setting gets exactly one line naming it (no usage dump, no traceback), exit 2."""
    result = run(*args, env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(PROG)
    for name in names:
        assert name in lines[0]


def test_two_unknown_flags_are_two_lines() -> None:
    """Several problems are all reported, one line each."""
    result = run("--one", "--two")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"{PROG}unknown flag --one; run `mempool-whale-exporter --help` for the flags",
        f"{PROG}unknown flag --two; run `mempool-whale-exporter --help` for the flags",
    ]


def test_a_busy_port_and_an_unwritable_database_are_one_line_each(tmp_path: Path) -> None:
    """Start-up problems found only at run time are configuration errors too: one line, 2."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("--listen", f"127.0.0.1:{port}", "--db", str(tmp_path / "w.duckdb"),
                     "--mempool-url", "http://127.0.0.1:9")  # fmt: skip
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert "--listen / WHALE_LISTEN" in line and "Traceback" not in result.stderr
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run("--db", str(blocker / "w.duckdb"), "--listen", "127.0.0.1:0")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "--db / WHALE_DB" in result.stderr.strip().splitlines()[-1]
