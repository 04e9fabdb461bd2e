"""Alertmanager webhook (version 4) payloads turned into Apprise messages for on-call.

Pure: validate the payload, build one message for its firing alerts and one for its resolved
alerts, and map severity to an Apprise notify type (critical -> failure, warning -> warning,
anything else -> info; resolved -> success). Error messages name fields, never echo values.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from apprise import NotifyType
from pydantic import SecretStr

from exporter.notify.message import escape

MAX_ALERTS = 1_000  # Alertmanager caps groups with max_alerts; refuse absurd payloads
SHOWN_ALERTS = 20
SEVERITY_RANK = {"critical": 3, "warning": 2, "info": 1}
SEVERITY_TYPE = {"critical": NotifyType.FAILURE, "warning": NotifyType.WARNING}


@dataclass(frozen=True, slots=True)
class Alert:
    status: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    generator_url: str | None


@dataclass(frozen=True, slots=True)
class AlertGroup:
    status: str
    receiver: str
    group_key: str
    group_labels: Mapping[str, str]
    common_labels: Mapping[str, str]
    common_annotations: Mapping[str, str]
    external_url: str | None
    alerts: tuple[Alert, ...]
    truncated: int = 0


@dataclass(frozen=True, slots=True)
class RelayMessage:
    status: str  # firing | resolved
    title: str
    body: str
    notify_type: NotifyType
    alerts: int


def parse(payload: Mapping[str, Any]) -> AlertGroup:
    """Validate a webhook payload; raises ValueError naming every problem."""
    problems: list[str] = []
    if not isinstance(payload, Mapping):
        raise ValueError("payload must be a JSON object")
    if str(payload.get("version")) != "4":
        problems.append('version must be "4"')
    status = payload.get("status")
    if status not in ("firing", "resolved"):
        problems.append("status must be firing or resolved")
    labels = _strings(payload.get("groupLabels"), "groupLabels", problems)
    common = _strings(payload.get("commonLabels"), "commonLabels", problems)
    annotations = _strings(payload.get("commonAnnotations"), "commonAnnotations", problems)
    external = _optional_str(payload.get("externalURL"), "externalURL", problems)
    receiver = _optional_str(payload.get("receiver"), "receiver", problems) or ""
    group_key = _optional_str(payload.get("groupKey"), "groupKey", problems) or ""
    truncated = payload.get("truncatedAlerts", 0)
    if isinstance(truncated, bool) or not isinstance(truncated, int) or truncated < 0:
        problems.append("truncatedAlerts must be an integer >= 0")
        truncated = 0
    raw_alerts = payload.get("alerts")
    alerts: list[Alert] = []
    if not isinstance(raw_alerts, list) or not raw_alerts:
        problems.append("alerts must be a non-empty list")
    elif len(raw_alerts) > MAX_ALERTS:
        problems.append(f"alerts: at most {MAX_ALERTS} alerts per payload")
    else:
        for index, raw in enumerate(raw_alerts):
            alert = _alert(raw, f"alerts[{index}]", problems)
            if alert is not None:
                alerts.append(alert)
    if problems:
        raise ValueError("; ".join(problems))
    return AlertGroup(
        status=str(status),
        receiver=receiver,
        group_key=group_key,
        group_labels=labels,
        common_labels=common,
        common_annotations=annotations,
        external_url=external,
        alerts=tuple(alerts),
        truncated=truncated,
    )


def notify_type(severity: str | None, status: str) -> NotifyType:
    """critical -> FAILURE, warning -> WARNING, anything else -> INFO; resolved -> SUCCESS."""
    if status == "resolved":
        return NotifyType.SUCCESS
    return SEVERITY_TYPE.get((severity or "").lower(), NotifyType.INFO)


def messages(group: AlertGroup) -> list[RelayMessage]:
    """One message for the group's firing alerts and one for its resolved ones."""
    out = []
    for status in ("firing", "resolved"):
        alerts = [alert for alert in group.alerts if alert.status == status]
        if alerts:
            out.append(_message(group, status, alerts))
    return out


def authorized(header: str | None, token: SecretStr | None) -> bool:
    """Whether an `Authorization` header carries the bearer token (always, without a token)."""
    if token is None:
        return True
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode())


def _message(group: AlertGroup, status: str, alerts: Sequence[Alert]) -> RelayMessage:
    first = alerts[0]
    summary = (
        group.common_annotations.get("summary")
        or first.annotations.get("summary")
        or group.common_labels.get("alertname")
        or first.labels.get("alertname")
        or "Alertmanager alert"
    )
    severity = _severity(group, alerts)
    prefix = f"[FIRING:{len(alerts)}]" if status == "firing" else "[RESOLVED]"
    lines: list[str] = []
    name = group.common_labels.get("alertname") or first.labels.get("alertname")
    head = " · ".join(
        part
        for part in (name and f"**{escape(name)}**", severity and f"severity {severity}")
        if part
    )
    if head:
        lines += [head, ""]
    description = group.common_annotations.get("description")
    if description:
        lines += [description, ""]
    for alert in alerts[:SHOWN_ALERTS]:
        lines.append("- " + _alert_line(alert, group, with_description=not description))
    hidden = len(alerts) - SHOWN_ALERTS + (group.truncated if status == "firing" else 0)
    if hidden > 0:
        lines.append(f"- … and {hidden} more")
    if group.common_labels:
        lines += ["", "Labels: " + _labels(group.common_labels)]
    links = []
    runbook = group.common_annotations.get("runbook_url") or first.annotations.get("runbook_url")
    if runbook:
        links.append(f"[Runbook]({runbook})")
    if group.external_url:
        links.append(f"[Alertmanager]({group.external_url})")
    if links:
        lines += ["", " · ".join(links)]
    return RelayMessage(
        status=status,
        title=f"{prefix} {summary}",
        body="\n".join(lines).strip(),
        notify_type=notify_type(severity, status),
        alerts=len(alerts),
    )


def _alert_line(alert: Alert, group: AlertGroup, *, with_description: bool) -> str:
    text = (
        (alert.annotations.get("description") if with_description else None)
        or alert.annotations.get("summary")
        or alert.labels.get("alertname")
        or "alert"
    )
    own = {k: v for k, v in alert.labels.items() if group.common_labels.get(k) != v}
    if own:
        text += f" ({_labels(own)})"
    if alert.generator_url:
        text += f" [source]({alert.generator_url})"
    return text


def _severity(group: AlertGroup, alerts: Sequence[Alert]) -> str | None:
    common = group.common_labels.get("severity")
    if common:
        return common.lower()
    found = [alert.labels.get("severity", "").lower() for alert in alerts]
    ranked = sorted(found, key=lambda name: SEVERITY_RANK.get(name, 0), reverse=True)
    return ranked[0] if ranked and ranked[0] else None


def _labels(labels: Mapping[str, str]) -> str:
    return ", ".join(f"`{key}={value}`" for key, value in sorted(labels.items()))


def _alert(raw: Any, where: str, problems: list[str]) -> Alert | None:
    if not isinstance(raw, Mapping):
        problems.append(f"{where} must be an object")
        return None
    found = len(problems)
    status = raw.get("status")
    if status not in ("firing", "resolved"):
        problems.append(f"{where}.status must be firing or resolved")
    labels = _strings(raw.get("labels"), f"{where}.labels", problems)
    annotations = _strings(raw.get("annotations"), f"{where}.annotations", problems)
    generator = _optional_str(raw.get("generatorURL"), f"{where}.generatorURL", problems)
    if len(problems) > found:
        return None
    return Alert(str(status), labels, annotations, generator or None)


def _strings(value: Any, where: str, problems: list[str]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        problems.append(f"{where} must map strings to strings")
        return {}
    return dict(value)


def _optional_str(value: Any, where: str, problems: list[str]) -> str | None:
    if value is None or isinstance(value, str):
        return value
    problems.append(f"{where} must be a string")
    return None
