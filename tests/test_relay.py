"""Alertmanager webhook payloads to on-call messages (exporter.notify.alertmanager)."""

from __future__ import annotations

from typing import Any

import pytest
from apprise import NotifyType
from pydantic import SecretStr

from exporter.notify import alertmanager as relay


def payload(status: str = "firing", severity: str = "critical", **extra: Any) -> dict[str, Any]:
    labels = {"alertname": "WhaleStreamDown", "severity": severity, "job": "whales"}
    alert = {
        "status": status,
        "labels": {**labels, "instance": "exporter:9743"},
        "annotations": {
            "summary": "The mempool stream is down",
            "description": "No frame for 5m on exporter:9743.",
            "runbook_url": "https://runbooks.example/stream-down",
        },
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
        "fingerprint": "0123456789abcdef",
    }
    body = {
        "version": "4",
        "groupKey": '{}:{alertname="WhaleStreamDown"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "oncall",
        "groupLabels": {"alertname": "WhaleStreamDown"},
        "commonLabels": labels,
        "commonAnnotations": {"summary": "The mempool stream is down"},
        "externalURL": "http://alertmanager:9093",
        "alerts": [alert],
    }
    body.update(extra)
    return body


def test_firing_payload_becomes_one_message() -> None:
    """A firing group gives one message: summary title, description, labels and links."""
    [msg] = relay.messages(relay.parse(payload()))
    assert msg.title == "[FIRING:1] The mempool stream is down"
    assert msg.notify_type is NotifyType.FAILURE
    assert "No frame for 5m on exporter:9743." in msg.body
    assert "`instance=exporter:9743`" in msg.body
    assert "[source](http://prometheus:9090/graph?g0.expr=up)" in msg.body
    assert "[Runbook](https://runbooks.example/stream-down)" in msg.body
    assert "[Alertmanager](http://alertmanager:9093)" in msg.body


def test_resolved_payload_is_a_success() -> None:
    """A resolved group is titled RESOLVED and sent as a success."""
    [msg] = relay.messages(relay.parse(payload("resolved")))
    assert msg.title == "[RESOLVED] The mempool stream is down"
    assert msg.notify_type is NotifyType.SUCCESS


def test_mixed_group_gives_a_firing_and_a_resolved_message() -> None:
    """Firing and resolved alerts of one group are relayed as two messages."""
    body = payload()
    done = dict(body["alerts"][0], status="resolved", labels={"instance": "other:1"})
    body["alerts"].append(done)
    assert [m.status for m in relay.messages(relay.parse(body))] == ["firing", "resolved"]


def test_severity_maps_to_notify_type() -> None:
    """critical -> failure, warning -> warning, anything else -> info."""
    assert relay.notify_type("critical", "firing") is NotifyType.FAILURE
    assert relay.notify_type("warning", "firing") is NotifyType.WARNING
    assert relay.notify_type("info", "firing") is NotifyType.INFO
    assert relay.notify_type(None, "firing") is NotifyType.INFO


def test_invalid_payload_names_every_problem() -> None:
    """A bad payload raises ValueError naming the fields, not echoing their values."""
    bad = payload(version="3", status="exploded", alerts=[{"status": "odd", "labels": [1]}])
    with pytest.raises(ValueError) as info:
        relay.parse(bad)
    text = str(info.value)
    for part in ("version", "status must be", "alerts[0].status", "alerts[0].labels"):
        assert part in text
    assert "exploded" not in text


def test_empty_alerts_are_invalid() -> None:
    """A payload without alerts is refused."""
    with pytest.raises(ValueError, match="non-empty"):
        relay.parse(payload(alerts=[]))


def test_bearer_token_check() -> None:
    """The relay token must come as `Bearer <token>`; no token configured means open."""
    token = SecretStr("s3cret-token")
    assert relay.authorized("Bearer s3cret-token", token)
    assert not relay.authorized("Bearer wrong", token)
    assert not relay.authorized("Basic s3cret-token", token)
    assert not relay.authorized(None, token)
    assert relay.authorized(None, None)
