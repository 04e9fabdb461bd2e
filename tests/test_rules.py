"""Prometheus rules, their promtool unit tests, Alertmanager routing and the runbook."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import tool

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_YML = ROOT / "prometheus" / "prometheus.yml"
RULES_DIR = ROOT / "prometheus" / "rules"
RULE_TESTS_DIR = ROOT / "prometheus" / "tests"
ALERTMANAGER_YML = ROOT / "alerting" / "alertmanager.yml"
RUNBOOK = ROOT / "alerting" / "RUNBOOK.md"
DOCS = ROOT / "docs" / "dashboards-and-alerts.md"

RUNBOOK_URL = (
    "https://github.com/mempool-whale-exporter/mempool-whale-exporter/blob/main/alerting/RUNBOOK.md"
)
REQUIRED_ALERTS = {
    "WhaleExporterDown",
    "WhaleStreamDisconnected",
    "WhaleStreamStale",
    "WhaleStreamReconnectStorm",
    "WhalePredictionAccuracyLow",
    "WhaleNotificationsFailing",
    "WhaleExporterMemoryHigh",
    "WhaleWatchdog",
}
# The dead man's switch fires by definition; it has no case in which it stays quiet.
ALWAYS_FIRING = {"WhaleWatchdog"}
SEVERITIES = {"critical", "warning", "info"}
RECEIVER_BY_SEVERITY = {"critical": "oncall", "warning": "chat", "info": "chat"}
RECEIVER_BY_ALERT = {"WhaleWatchdog": "deadmansswitch"}
RUNBOOK_SUBSECTIONS = ["Meaning", "First checks", "Fixes"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def rule_test_files() -> list[Path]:
    return sorted(RULE_TESTS_DIR.glob("*.yml"))


def all_rules() -> list[dict[str, Any]]:
    return [
        rule for path in rule_files() for group in load(path)["groups"] for rule in group["rules"]
    ]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for rule in all_rules() if "alert" in rule]


def alert_names() -> set[str]:
    return {rule["alert"] for rule in alert_rules()}


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub generates for a document's headings (lower-case, punctuation dropped)."""
    seen: Counter[str] = Counter()
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        anchors.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return anchors


def runbook_sections() -> dict[str, str]:
    """Map each second-level heading of the runbook to its body."""
    parts = re.split(r"^## (.+)$", RUNBOOK.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def test_promtool_check_config() -> None:
    """prometheus.yml and every rule file it loads pass `promtool check config`."""
    result = run(tool("promtool"), "check", "config", str(PROMETHEUS_YML))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules() -> None:
    """Every rule file passes `promtool check rules` with its lint checks."""
    result = run(tool("promtool"), "check", "rules", *map(str, rule_files()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    """Every promtool unit test file under prometheus/tests passes `promtool test rules`."""
    files = rule_test_files()
    assert files, "no promtool unit tests found"
    result = run(tool("promtool"), "test", "rules", *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_loads_every_rule_file_and_alertmanager() -> None:
    """prometheus.yml scrapes whale-exporter, loads every rule file and sends to Alertmanager."""
    config = load(PROMETHEUS_YML)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert "whale-exporter" in jobs
    assert jobs["whale-exporter"].get("metrics_path", "/metrics") == "/metrics"
    loaded = {
        path for pattern in config["rule_files"] for path in PROMETHEUS_YML.parent.glob(pattern)
    }
    assert loaded == set(rule_files())
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]


def test_rule_tests_load_every_rule_file() -> None:
    """Each promtool test file loads all rule files, so recording rules feed the alerts."""
    for path in rule_test_files():
        loaded = {(path.parent / name).resolve() for name in load(path)["rule_files"]}
        assert loaded == {p.resolve() for p in rule_files()}, path.name


def test_required_alerts_exist() -> None:
    """Every alert the issue asks for is defined."""
    assert alert_names() >= REQUIRED_ALERTS


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    """Each alert has a promtool case where it fires and one where it stays quiet."""
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in rule_test_files():
        for case in load(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = alert_names()
    assert names - fires == set(), "alerts without a firing case"
    assert names - ALWAYS_FIRING - quiet == set(), "alerts without a quiet case"
    assert (fires | quiet) - names == set(), "tests for alerts that do not exist"


def test_alert_naming_labels_and_annotations() -> None:
    """Alerts are CamelCase Whale*, with severity, static summary, templated description."""
    for rule in alert_rules():
        name = rule["alert"]
        assert re.fullmatch(r"Whale(?:[A-Z][a-z0-9]*)+", name), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert "{{" not in annotations["summary"], f"{name}: summary must be static"
        assert annotations["summary"].endswith("."), name
        assert "{{" in annotations["description"], f"{name}: description must be templated"


def test_alerts_sharing_a_name_differ_only_in_severity() -> None:
    """An alert defined twice is a warning/critical pair with the same summary and runbook."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for rule in alert_rules():
        by_name.setdefault(rule["alert"], []).append(rule)
    for name, rules in by_name.items():
        if len(rules) == 1:
            continue
        assert sorted(r["labels"]["severity"] for r in rules) == ["critical", "warning"], name
        assert len({r["annotations"]["summary"] for r in rules}) == 1, name
        assert len({r["annotations"]["runbook_url"] for r in rules}) == 1, name


def test_recording_rule_names_follow_level_metric_operation() -> None:
    """Recording rules are named level:metric:operation."""
    records = [rule["record"] for rule in all_rules() if "record" in rule]
    assert records
    for name in records:
        assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", name), name


def test_runbook_urls_point_at_existing_runbook_anchors() -> None:
    """Each runbook_url is the runbook plus the anchor GitHub gives that alert's heading."""
    anchors = github_anchors(RUNBOOK.read_text(encoding="utf-8"))
    for rule in alert_rules():
        url = rule["annotations"]["runbook_url"]
        base, _, anchor = url.partition("#")
        assert base == RUNBOOK_URL, rule["alert"]
        assert anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in anchors, f"{rule['alert']}: no heading for #{anchor} in RUNBOOK.md"


def test_runbook_has_one_complete_section_per_alert() -> None:
    """RUNBOOK.md has exactly one section per alert, each with meaning, first checks, fixes."""
    sections = runbook_sections()
    assert set(sections) == alert_names()
    for name, body in sections.items():
        headings = re.findall(r"^### (.+)$", body, flags=re.MULTILINE)
        assert headings == RUNBOOK_SUBSECTIONS, name


def test_runbook_internal_links_resolve() -> None:
    """Every #anchor link inside RUNBOOK.md points at a heading that exists."""
    text = RUNBOOK.read_text(encoding="utf-8")
    anchors = github_anchors(text)
    for link in re.findall(r"\]\(#([^)]+)\)", text):
        assert link in anchors, link


def test_amtool_check_config() -> None:
    """alertmanager.yml passes `amtool check-config`."""
    result = run(tool("amtool"), "check-config", str(ALERTMANAGER_YML))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "rule",
    alert_rules(),
    ids=lambda rule: f"{rule['alert']}-{rule['labels']['severity']}",
)
def test_each_alert_routes_to_the_receiver_for_its_severity(rule: dict[str, Any]) -> None:
    """amtool routes critical alerts to on-call, warnings to chat, the watchdog to the switch."""
    severity = rule["labels"]["severity"]
    expected = RECEIVER_BY_ALERT.get(rule["alert"], RECEIVER_BY_SEVERITY[severity])
    result = run(
        tool("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_YML}",
        f"alertname={rule['alert']}",
        f"severity={severity}",
        "job=whale-exporter",
        "instance=exporter:9743",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == expected


def test_oncall_receiver_relays_to_exporter_and_emails() -> None:
    """The on-call receiver posts to the exporter's /alertmanager relay and sends email."""
    receivers = {r["name"]: r for r in load(ALERTMANAGER_YML)["receivers"]}
    oncall = receivers["oncall"]
    (webhook,) = oncall["webhook_configs"]
    assert webhook["url"].endswith(":9743/alertmanager")
    assert webhook["send_resolved"] is True
    assert oncall["email_configs"][0]["to"]
    assert receivers["chat"]["slack_configs"] or receivers["chat"]["webhook_configs"]


def test_warning_is_inhibited_by_the_critical_of_the_same_alert() -> None:
    """An inhibit rule silences a warning while the critical with the same name fires."""
    rules = load(ALERTMANAGER_YML)["inhibit_rules"]
    assert any(
        rule["source_matchers"] == ['severity = "critical"']
        and rule["target_matchers"] == ['severity = "warning"']
        and {"alertname", "job", "instance"} <= set(rule["equal"])
        for rule in rules
    )


def test_docs_list_every_alert() -> None:
    """The README mentions every alert with its severities."""
    text = DOCS.read_text(encoding="utf-8")
    for rule in alert_rules():
        rows = [line for line in text.splitlines() if f"`{rule['alert']}`" in line]
        assert rows, f"{rule['alert']} missing from {DOCS.name}"
        assert any(rule["labels"]["severity"] in row for row in rows), rule["alert"]
