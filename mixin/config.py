"""The one configuration that alerts, recording rules and dashboards all read."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

RUNBOOK_URL = (
    "https://github.com/mempool-whale-exporter/mempool-whale-exporter/blob/main/alerting/RUNBOOK.md"
)


@dataclass(frozen=True)
class Config:
    """Selector, thresholds and links; override any field from a YAML file (`--config`)."""

    # PromQL matchers that select the exporter's series, e.g. `job="whale-exporter"` or
    # `job="monitoring/whales",namespace="btc"`. Every rule's selector starts with these.
    selector: str = 'job="whale-exporter"'
    runbook_url: str = RUNBOOK_URL  # each alert links to <runbook_url>#<alertname lower-case>
    watchdog: bool = True  # the always-firing WhaleWatchdog for a dead man's switch
    # Availability
    down_for: str = "2m"
    memory_high_mib: int = 400
    memory_high_for: str = "15m"
    # Stream
    disconnected_for: str = "2m"
    stale_after_seconds: int = 300
    reconnects_per_15m: int = 5
    sequence_gaps_per_15m: int = 2
    decode_errors_per_15m: int = 5
    chain_tip_stale_hours: int = 2
    # Pipeline
    queue_backlog_for: str = "15m"
    # Predictions and recall
    accuracy_warning: float = 0.75  # 24h accuracy below this warns (never pages)
    accuracy_min_predictions: int = 10  # resolved predictions in 24h before accuracy is judged
    recall_warning: float = 0.95  # 24h recall below this warns
    recall_min_confirmed: int = 10  # confirmed whales in 24h before recall is judged
    # Notifications
    notify_failure_warning: float = 0.10
    notify_failure_critical: float = 0.90
    # Dashboards
    dashboard_tags: tuple[str, ...] = ("mempool-whale-exporter",)

    def runbook(self, alert: str) -> str:
        return f"{self.runbook_url}#{alert.lower()}"

    def sel(self, *extra: str) -> str:
        """A label selector body: the configured matchers plus `extra` ones."""
        return ",".join([self.selector, *extra]) if self.selector else ",".join(extra)


def load(path: Path | None) -> Config:
    """The defaults, overridden by the keys of a YAML file; unknown keys are an error."""
    if path is None:
        return Config()
    data: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: expected a mapping of settings")
    fields = {field.name: field for field in dataclasses.fields(Config)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SystemExit(f"{path}: unknown settings {', '.join(unknown)}")
    if "dashboard_tags" in data:
        data["dashboard_tags"] = tuple(data["dashboard_tags"])
    return Config(**data)
