"""Kubernetes objects for the Prometheus Operator: a PrometheusRule and a ServiceMonitor."""

from __future__ import annotations

import re
from typing import Any

from mixin.config import Config
from mixin.rules import alert_groups, recording_groups

NAME = "mempool-whale-exporter"
LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": NAME}


def prometheus_rule(config: Config) -> dict[str, Any]:
    """Every recording and alert group, as one PrometheusRule."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": NAME, "labels": dict(LABELS)},
        "spec": {"groups": recording_groups(config) + alert_groups(config)},
    }


def service_monitor(config: Config) -> dict[str, Any]:
    """Scrape the exporter's Service port `metrics`, setting `job` so the rules' selector matches.

    The operator names the job after the Service; the relabeling sets the job that the
    selector's `job="..."` matcher expects (none when the selector has no such matcher).
    """
    match = re.search(r'(?:^|,)\s*job\s*=\s*"([^"]+)"', config.selector)
    relabelings = (
        [{"action": "replace", "targetLabel": "job", "replacement": match.group(1)}]
        if match
        else []
    )
    endpoint: dict[str, Any] = {
        "port": "metrics",
        "path": "/metrics",
        "interval": "15s",
        "scrapeTimeout": "10s",
    }
    if relabelings:
        endpoint["relabelings"] = relabelings
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": NAME, "labels": dict(LABELS)},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
            "endpoints": [endpoint],
        },
    }
