"""The README front page: short, the two commands early, three quick starts, links that resolve."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from test_rules import github_anchors

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TEXT = README.read_text(encoding="utf-8")
# [text](target) links, skipping images' alt text; autolinks <http...> are external anyway.
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def test_front_page_is_under_12_kb() -> None:
    """The README stays a front page: under 12 KB; reference material lives in docs/."""
    assert len(TEXT.encode("utf-8")) < 12 * 1024


def test_the_two_commands_come_within_60_lines() -> None:
    """`make run` (or `make demo`) and `make test` are shown in the first 60 lines."""
    head = "\n".join(TEXT.splitlines()[:60])
    assert "make run" in head and "make demo" in head and "make test" in head


def test_three_quick_starts_and_a_data_flow_picture() -> None:
    """Quick starts for make demo, compose and an existing Prometheus, and a data-flow picture."""
    headings = re.findall(r"^## (.+)$", TEXT, flags=re.MULTILINE)
    starts = [h for h in headings if h.lower().startswith("quick start")]
    assert len(starts) == 3, headings
    assert "make demo" in starts[0] and "compose" in starts[1] and "Prometheus" in starts[2]
    assert "data flow" in " ".join(headings).lower() and "──>" in TEXT
    for needed in ("scrape_configs", "rule_files", "Import", "Infinity"):
        assert needed in TEXT, needed


def links() -> list[str]:
    found = LINK.findall(TEXT)
    assert len(found) >= 10
    return found


@pytest.mark.parametrize("target", links())
def test_every_link_resolves_to_a_file_or_an_anchor(target: str) -> None:
    """Each relative link names an existing file (and heading anchor); others are https URLs."""
    if re.match(r"[a-z]+:", target):
        assert target.startswith("https://"), target
        return
    path, _, anchor = target.partition("#")
    file = (ROOT / path) if path else README
    assert file.exists(), f"{target}: no such file"
    if anchor:
        assert file.suffix == ".md", target
        assert anchor in github_anchors(file.read_text(encoding="utf-8")), target


def test_license_matches_pyproject() -> None:
    """LICENSE is the MIT text that pyproject.toml declares."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
