"""The monitoring mixin: generated files are current, and a non-default config really applies."""

from __future__ import annotations

import difflib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import tool

ROOT = Path(__file__).resolve().parent.parent
RULE_TESTS = sorted((ROOT / "prometheus" / "tests").glob("*.yml"))
GENERATED_DIRS = ("prometheus/rules", "grafana/dashboards", "deploy/kubernetes")
OTHER_JOB = "bitcoin-whales"
# The default job name as a whole word: not inside the repository's URL (mempool-whale-exporter).
DEFAULT_JOB = re.compile(r"(?<![\w-])whale-exporter(?![\w-])")


def generate(out: Path, config: dict[str, Any] | None = None) -> Path:
    argv = [sys.executable, "-m", "mixin", "--out", str(out)]
    if config is not None:
        path = out.parent / f"{out.name}-config.yml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        argv += ["--config", str(path)]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    return out


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def rule_tests_for(rules: Path, into: Path, job: str | None = None) -> list[Path]:
    """Copies of prometheus/tests/*.yml loading `rules`, with every job label renamed to `job`."""
    into.mkdir(parents=True, exist_ok=True)
    copies = []
    for source in RULE_TESTS:
        text = source.read_text(encoding="utf-8")
        if job is not None:
            text = DEFAULT_JOB.sub(job, text)
        data = yaml.safe_load(text)
        data["rule_files"] = [str(rules / Path(name).name) for name in data["rule_files"]]
        target = into / source.name
        target.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        copies.append(target)
    return copies


def test_committed_generated_files_match_the_mixin(tmp_path: Path) -> None:
    """Rules, dashboards and Kubernetes objects equal a fresh `make mixin` byte for byte."""
    out = generate(tmp_path / "out")
    generated = {
        str(path.relative_to(out)): path.read_text(encoding="utf-8")
        for path in out.rglob("*")
        if path.is_file()
    }
    committed = {
        str(path.relative_to(ROOT)): path.read_text(encoding="utf-8")
        for directory in GENERATED_DIRS
        for path in (ROOT / directory).rglob("*")
        if path.is_file()
    }
    assert sorted(generated) == sorted(committed), "run `make mixin` and commit the result"
    for name, text in generated.items():
        diff = "".join(
            difflib.unified_diff(
                committed[name].splitlines(keepends=True), text.splitlines(keepends=True), n=1
            )
        )
        assert not diff, f"{name} is stale; run `make mixin`:\n{diff[:2000]}"


def test_rules_with_another_selector_pass_check_and_the_unit_tests(tmp_path: Path) -> None:
    """Generated for job="bitcoin-whales", the rules pass promtool and every unit test renamed."""
    out = generate(tmp_path / "out", {"selector": f'job="{OTHER_JOB}"'})
    rules = out / "prometheus" / "rules"
    exprs = [
        rule["expr"]
        for path in sorted(rules.glob("*.yml"))
        for group in load(path)["groups"]
        for rule in group["rules"]
    ]
    assert not [e for e in exprs if DEFAULT_JOB.search(e)], "a rule hard-codes the default job"
    assert sum(e.count(f'job="{OTHER_JOB}"') for e in exprs) >= 20
    checked = run(tool("promtool"), "check", "rules", *map(str, sorted(rules.glob("*.yml"))))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tests = rule_tests_for(rules, tmp_path / "tests", OTHER_JOB)
    result = run(tool("promtool"), "test", "rules", *map(str, tests))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_selector_decides_which_series_are_watched(tmp_path: Path) -> None:
    """Rules for another job ignore the default job's series: the default-job tests then fail."""
    out = generate(tmp_path / "out", {"selector": f'job="{OTHER_JOB}"'})
    tests = rule_tests_for(out / "prometheus" / "rules", tmp_path / "tests")
    result = run(tool("promtool"), "test", "rules", *map(str, tests))
    assert result.returncode != 0
    assert "WhaleExporterDown" in result.stdout + result.stderr


def test_watchdog_and_runbook_url_come_from_the_config(tmp_path: Path) -> None:
    """watchdog: false drops WhaleWatchdog; runbook_url sets every alert's link base."""
    base = "https://wiki.example.org/whales"
    out = generate(tmp_path / "out", {"watchdog": False, "runbook_url": base})
    alerts = yaml.safe_load((out / "prometheus/rules/alerts.yml").read_text(encoding="utf-8"))
    rules = [rule for group in alerts["groups"] for rule in group["rules"]]
    assert "WhaleWatchdog" not in {rule["alert"] for rule in rules}
    for rule in rules:
        assert rule["annotations"]["runbook_url"] == f"{base}#{rule['alert'].lower()}"


def test_thresholds_reach_rules_and_dashboards(tmp_path: Path) -> None:
    """One threshold in the config changes the alert and the dashboard that shows it."""
    out = generate(tmp_path / "out", {"memory_high_mib": 800, "accuracy_warning": 0.6})
    alerts = (out / "prometheus/rules/alerts.yml").read_text(encoding="utf-8")
    assert "> 800 * 1024 * 1024" in alerts and "< 0.6\n" in alerts
    health = (out / "grafana/dashboards/exporter-health.json").read_text(encoding="utf-8")
    assert str(800 * 1024 * 1024) in health
    accuracy = (out / "grafana/dashboards/prediction-accuracy.json").read_text(encoding="utf-8")
    assert "below 60%" in accuracy


def test_unknown_config_keys_are_refused(tmp_path: Path) -> None:
    """A misspelt setting stops the generator with a message naming it."""
    config = tmp_path / "bad.yml"
    config.write_text("selectr: 'job=\"x\"'\n", encoding="utf-8")
    argv = [sys.executable, "-m", "mixin", "--config", str(config), "--out", str(tmp_path)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert result.returncode != 0 and "selectr" in result.stderr


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_prometheus_rule_holds_the_same_groups_and_passes_promtool(tmp_path: Path) -> None:
    """The PrometheusRule's groups are the rule files' groups, and promtool accepts them."""
    kube = ROOT / "deploy" / "kubernetes"
    rule = load(kube / "prometheusrule.yaml")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    files = [load(ROOT / "prometheus" / "rules" / name) for name in ("recording.yml", "alerts.yml")]
    assert rule["spec"]["groups"] == [group for data in files for group in data["groups"]]
    extracted = tmp_path / "groups.yml"
    extracted.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}), encoding="utf-8")
    result = run(tool("promtool"), "check", "rules", str(extracted))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("job", ["whale-exporter", OTHER_JOB])
def test_service_monitor_sets_the_job_the_rules_select(tmp_path: Path, job: str) -> None:
    """The ServiceMonitor scrapes /metrics on port `metrics` and relabels job to the selector's."""
    config = None if job == "whale-exporter" else {"selector": f'job="{job}"'}
    out = generate(tmp_path / "out", config)
    monitor = load(out / "deploy/kubernetes/servicemonitor.yaml")
    assert monitor["kind"] == "ServiceMonitor"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    (relabel,) = endpoint["relabelings"]
    assert relabel == {"action": "replace", "targetLabel": "job", "replacement": job}
