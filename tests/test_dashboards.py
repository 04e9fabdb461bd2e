"""Grafana dashboards: generated JSON is current, follows the lint rules and its PromQL parses."""

from __future__ import annotations

import difflib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"
DATASOURCES_YML = GRAFANA / "provisioning" / "datasources" / "datasources.yml"
DOCS = ROOT / "docs" / "dashboards-and-alerts.md"

DASHBOARD_FILES = sorted(DASHBOARD_DIR.glob("*.json"))
REQUIRED_VARIABLES = {"datasource": "datasource", "job": "query", "instance": "query"}
RANGE_FUNCTIONS = re.compile(r"\b(rate|irate|increase|delta|idelta|deriv|\w+_over_time)\s*\(")
# Values substituted for Grafana variables before promtool parses an expression.
VARIABLE_VALUES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
    "job": "whale-exporter",
    "instance": "exporter:9743",
}
REQUIRED_PANELS = {
    "whale-activity": [
        "Whales per hour by flow",
        "Whale volume by flow",
        "Pending vs confirmed",
        "Whale value distribution",
        "Urgency heatmap",
        "Recommended fee rates",
        "Whale fee rates",
        "Recent whales",
        "Whale threshold",
    ],
    "whale-prediction-accuracy": [
        "Accuracy (1h)",
        "Accuracy (24h)",
        "Accuracy (7d)",
        "Recall (24h)",
        "Outcomes per hour",
        "Prediction error distribution",
    ],
    "whale-exporter-health": [
        "Firing alerts",
        "Stream state",
        "REST requests by code",
        "REST errors by endpoint",
        "Event-loop lag",
        "Stream connection",
        "Reconnects and sequence gaps",
        "Message rate by type",
        "Detection latency",
        "Notifications",
        "Resident memory",
    ],
}


def load_dashboard(path: Path) -> dict[str, Any]:
    model: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return model


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows, except the rows themselves."""
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def prometheus_targets(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every Prometheus query in the dashboard."""
    return [
        (panel["title"], target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        if target.get("datasource", panel.get("datasource", {})).get("type") == "prometheus"
    ]


def substitute(expr: str) -> str:
    """Replace Grafana variables ($x, ${x}, ${x:fmt}) with representative values."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in VARIABLE_VALUES:
            raise AssertionError(f"unknown variable ${name} in {expr!r}")
        return VARIABLE_VALUES[name]

    return re.sub(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)", value, expr)


def datasources() -> list[dict[str, Any]]:
    config: dict[str, Any] = yaml.safe_load(DATASOURCES_YML.read_text(encoding="utf-8"))
    return list(config["datasources"])


@pytest.fixture(params=DASHBOARD_FILES, ids=lambda path: path.stem)
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load_dashboard(request.param)


def test_three_dashboards_are_committed() -> None:
    """The three dashboards exist with their fixed uids."""
    uids = {load_dashboard(path)["uid"] for path in DASHBOARD_FILES}
    assert uids == set(REQUIRED_PANELS)


def test_committed_json_matches_the_generator(tmp_path: Path) -> None:
    """Regenerating the dashboards reproduces the committed JSON byte for byte."""
    result = subprocess.run(
        [sys.executable, "-m", "mixin", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "grafana" / "dashboards"
    generated = {path.name: path.read_text(encoding="utf-8") for path in out.glob("*.json")}
    committed = {path.name: path.read_text(encoding="utf-8") for path in DASHBOARD_FILES}
    assert sorted(generated) == sorted(committed), "run `make mixin` and commit the result"
    for name, text in generated.items():
        diff = "".join(
            difflib.unified_diff(
                committed[name].splitlines(keepends=True),
                text.splitlines(keepends=True),
                f"committed/{name}",
                f"generated/{name}",
                n=2,
            )
        )
        assert not diff, f"{name} is stale; run `make mixin`:\n{diff[:3000]}"


def test_generation_is_deterministic(tmp_path: Path) -> None:
    """Two generator runs write identical files with sorted keys."""
    outputs = []
    for run in ("a", "b"):
        subprocess.run(
            [sys.executable, "-m", "mixin", "--out", str(tmp_path / run)],
            capture_output=True,
            timeout=60,
            check=True,
            cwd=ROOT,
        )
        out = tmp_path / run / "grafana" / "dashboards"
        outputs.append({p.name: p.read_bytes() for p in sorted(out.glob("*.json"))})
    assert outputs[0] == outputs[1]
    for text in outputs[0].values():
        canonical = json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False)
        assert text.decode() == canonical + "\n"


def test_dashboard_has_datasource_job_and_instance_variables(dashboard: dict[str, Any]) -> None:
    """Each dashboard has datasource, job and instance variables, job/instance from Prometheus."""
    variables = {var["name"]: var for var in dashboard["templating"]["list"]}
    for name, kind in REQUIRED_VARIABLES.items():
        assert variables[name]["type"] == kind, name
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "instance"):
        assert variables[name]["datasource"]["uid"] == "${datasource}"
    assert "$job" in variables["instance"]["query"], "instance must be filtered by job"


def test_every_panel_has_a_unit_title_and_description(dashboard: dict[str, Any]) -> None:
    """Every panel sets a unit, a title and a description."""
    for panel in panels(dashboard):
        assert panel.get("title"), panel["id"]
        assert panel.get("description"), panel["title"]
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        assert unit, f"{panel['title']}: no unit"


def test_required_panels_exist(dashboard: dict[str, Any]) -> None:
    """Each dashboard shows the panels the issue asks for."""
    titles = {panel["title"] for panel in panels(dashboard)}
    assert set(REQUIRED_PANELS[dashboard["uid"]]) <= titles


def test_panel_ids_are_unique_and_layout_fits(dashboard: dict[str, Any]) -> None:
    """Panel ids are unique and no panel overflows the 24-column grid or overlaps another."""
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_panels_use_the_provisioned_datasources(dashboard: dict[str, Any]) -> None:
    """Prometheus panels use $datasource; others a datasource variable set to a provisioned uid."""
    provisioned = {ds["uid"]: ds["type"] for ds in datasources()}
    variables = {var["name"]: var for var in dashboard["templating"]["list"]}
    for panel in panels(dashboard):
        ref = panel["datasource"]
        if ref["type"] == "prometheus":
            assert ref["uid"] == "${datasource}", panel["title"]
        else:
            match = re.fullmatch(r"\$\{(\w+)\}", ref["uid"])
            assert match, f"{panel['title']}: use a datasource variable, not a fixed uid"
            variable = variables[match.group(1)]
            assert variable["type"] == "datasource" and variable["query"] == ref["type"]
            assert provisioned.get(variable["current"]["value"]) == ref["type"], panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"] == ref, panel["title"]


def test_every_rate_uses_rate_interval(dashboard: dict[str, Any]) -> None:
    """Every rate()/increase() (indeed every range selector) uses $__rate_interval."""
    for title, expr in prometheus_targets(dashboard):
        ranges = re.findall(r"\[([^\]]*)\]", expr)
        assert all(r == "$__rate_interval" for r in ranges), f"{title}: {expr}"
        if RANGE_FUNCTIONS.search(expr):
            assert ranges, f"{title}: {expr}"


# A metric or a recording rule (level:whale_metric:operation) of the exporter's.
METRIC = r"(?:\b[a-z_]+:)?\b(?:whale_\w+|process_\w+|up)\b(?::\w+)?"
# Prometheus' own ALERTS series: job-level alerts and the Watchdog have no instance to filter on.
ALERTS_QUERY = 'ALERTS{alertstate="firing",alertname=~"Whale.+"}'


def test_every_query_is_filtered_by_job_and_instance(dashboard: dict[str, Any]) -> None:
    """Each metric (and recording rule) selector is restricted to the selected job and instance."""
    for title, expr in prometheus_targets(dashboard):
        if expr == ALERTS_QUERY:
            continue
        names = re.findall(METRIC, expr)
        assert names, f"{title}: no metric in {expr}"
        selectors = re.findall(METRIC + r"(\{[^}]*\})?", expr)
        for selector in selectors:
            assert 'job=~"$job"' in selector, f"{title}: {expr}"
            assert 'instance=~"$instance"' in selector, f"{title}: {expr}"


def test_recent_whales_table_reads_the_api_with_explorer_links() -> None:
    """The recent-whales table queries /api/v1/whales via Infinity and links to the explorer."""
    dashboard = load_dashboard(DASHBOARD_DIR / "whale-activity.json")
    (panel,) = [p for p in panels(dashboard) if p["title"] == "Recent whales"]
    assert panels(dashboard)[0] is panel, "the table comes first: read top-down"
    (target,) = panel["targets"]
    assert target["url"].startswith("/api/v1/whales?")
    assert "since=${__from:date:iso}" in target["url"] and "until=${__to:date:iso}" in target["url"]
    assert target["root_selector"] == "whales"
    selectors = {column["selector"] for column in target["columns"]}
    assert {"txid", "first_seen", "value_btc", "flow", "explorer_url"} <= selectors
    links = [
        prop["value"]
        for override in panel["fieldConfig"]["overrides"]
        for prop in override["properties"]
        if prop["id"] == "links"
    ]
    assert links and "${__data.fields.explorer_url}" in links[0][0]["url"]


def test_provisioned_datasources_have_fixed_uids() -> None:
    """Provisioning defines Prometheus (uid prometheus) and Infinity reading the exporter API."""
    by_uid = {ds["uid"]: ds for ds in datasources()}
    assert by_uid["prometheus"]["type"] == "prometheus"
    infinity = by_uid["whale-api"]
    assert infinity["type"] == "yesoreyeram-infinity-datasource"
    assert infinity["url"] in infinity["jsonData"]["allowedHosts"]


def test_every_promql_expression_parses_with_promtool(tmp_path: Path) -> None:
    """promtool accepts every dashboard query (and variable selector) with variables filled in."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(
            "promtool is not on PATH. `make test` installs it; by hand: apt-get install prometheus",
            pytrace=False,
        )
    exprs: list[tuple[str, str]] = []
    for path in DASHBOARD_FILES:
        model = load_dashboard(path)
        exprs += [(f"{path.stem}: {title}", expr) for title, expr in prometheus_targets(model)]
        for var in model["templating"]["list"]:
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", str(var.get("query", "")))
            if match:
                exprs.append((f"{path.stem}: ${var['name']}", match.group(1)))
    assert len(exprs) > 50
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [
                    {"record": f"dashboard_query_{i}", "expr": substitute(expr)}
                    for i, (_, expr) in enumerate(exprs)
                ],
            }
        ]
    }
    rule_file = tmp_path / "dashboards.yml"
    rule_file.write_text(yaml.safe_dump(rules), encoding="utf-8")
    result = subprocess.run(
        [promtool, "check", "rules", str(rule_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    index = {f"dashboard_query_{i}": where for i, (where, _) in enumerate(exprs)}
    assert result.returncode == 0, "\n".join(
        [result.stdout, result.stderr, *(f"{k} = {v}" for k, v in index.items())]
    )


def test_docs_list_every_panel() -> None:
    """The README names every dashboard and every panel."""
    text = " ".join(DOCS.read_text(encoding="utf-8").split())
    for path in DASHBOARD_FILES:
        model = load_dashboard(path)
        assert model["title"] in text
        for panel in panels(model):
            assert f"**{panel['title']}**" in text, f"{model['title']}: {panel['title']}"


def recorded_names() -> set[str]:
    rules = yaml.safe_load((ROOT / "prometheus" / "rules" / "recording.yml").read_text("utf-8"))
    return {rule["record"] for group in rules["groups"] for rule in group["rules"]}


def test_recording_rules_used_by_dashboards_exist() -> None:
    """Every level:metric:operation name a dashboard queries is a committed recording rule."""
    used = {
        name
        for path in DASHBOARD_FILES
        for _, expr in prometheus_targets(load_dashboard(path))
        for name in re.findall(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b", expr)
    }
    assert {
        "instance:whale_predictions:increase24h",
        "instance:whale_confirmed:increase24h",
    } <= used
    assert used <= recorded_names()


def test_accuracy_panels_use_recording_rules_and_say_why_a_value_is_missing() -> None:
    """Accuracy and recall stats sum recording rules and map NaN and empty to words."""
    dashboard = load_dashboard(DASHBOARD_DIR / "prediction-accuracy.json")
    stats = [p for p in panels(dashboard) if p["title"].startswith(("Accuracy (", "Recall ("))]
    assert len(stats) == 4
    for panel in stats:
        (target,) = panel["targets"]
        assert re.match(
            r"sum\(instance:whale_(predictions|confirmed):increase\w+\{", target["expr"]
        )
        matches = {
            mapping["options"]["match"]
            for mapping in panel["fieldConfig"]["defaults"]["mappings"]
            if mapping["type"] == "special"
        }
        assert {"nan", "null", "empty"} <= matches, panel["title"]


def test_whale_panels_show_exemplars() -> None:
    """The whale rate and value panels ask Prometheus for exemplars (txid links)."""
    dashboard = load_dashboard(DASHBOARD_DIR / "whale-activity.json")
    with_exemplars = {
        panel["title"]
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        if target.get("exemplar")
    }
    assert {"Whales per hour by flow", "Whale value quantiles"} <= with_exemplars
    prometheus = {ds["uid"]: ds for ds in datasources()}["prometheus"]
    (link,) = prometheus["jsonData"]["exemplarTraceIdDestinations"]
    assert link["name"] == "txid" and link["url"].endswith("/tx/${__value.raw}")
