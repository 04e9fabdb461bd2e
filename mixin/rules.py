"""Prometheus alert and recording rules, built from a `Config`.

Conventions (monitoring mixins): alerts are CamelCase with the Whale prefix; every alert has a
severity (critical pages on-call, warning goes to chat, info is routed by name), a static
summary, a templated description and a runbook_url. Recording rules are named
level:metric:operation; "instance" rules keep job and instance, "job" rules sum instances.
Ratios that instances and windows share are recorded from counters, never read from a gauge.
"""

from __future__ import annotations

from typing import Any

from mixin.config import Config

Rule = dict[str, Any]
Group = dict[str, Any]

ACCURACY_WINDOWS = ("1h", "24h", "7d")
BY_INSTANCE = "job, instance"


def _alert(
    config: Config,
    name: str,
    expr: str,
    severity: str,
    summary: str,
    description: str,
    for_: str | None = None,
) -> Rule:
    rule: Rule = {"alert": name, "expr": expr.strip()}
    if for_:
        rule["for"] = for_
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {
        "summary": summary,
        "description": " ".join(description.split()),
        "runbook_url": config.runbook(name),
    }
    return rule


def recording_groups(c: Config) -> list[Group]:
    s = c.sel
    rules: list[Rule] = [
        # Detection
        {
            "record": "instance:whale_transactions:rate5m",
            "expr": f"sum by ({BY_INSTANCE}, flow) (rate(whale_transactions_total{{{s()}}}[5m]))",
        },
        {
            "record": "job:whale_transactions:rate5m",
            "expr": "sum by (job, flow) (instance:whale_transactions:rate5m)",
        },
        {
            "record": "instance:whale_volume_btc:rate5m",
            "expr": f"sum by ({BY_INSTANCE}, flow) (rate(whale_volume_btc_total{{{s()}}}[5m]))",
        },
        {
            "record": "job:whale_volume_btc:rate5m",
            "expr": "sum by (job, flow) (instance:whale_volume_btc:rate5m)",
        },
        # Stream
        {
            "record": "instance:whale_stream_messages:rate5m",
            "expr": f"sum by ({BY_INSTANCE}, message_type) "
            f"(rate(whale_stream_messages_total{{{s()}}}[5m]))",
        },
        {
            "record": "instance:whale_stream_reconnects:increase15m",
            "expr": f"sum by ({BY_INSTANCE}) "
            f"(increase(whale_stream_reconnects_total{{{s()}}}[15m]))",
        },
        {
            "record": "instance:whale_stream_sequence_gaps:increase15m",
            "expr": f"sum by ({BY_INSTANCE}) "
            f"(increase(whale_stream_sequence_gaps_total{{{s()}}}[15m]))",
        },
        {
            "record": "instance:whale_stream_decode_errors:increase15m",
            "expr": f"sum by ({BY_INSTANCE}, kind) "
            f"(increase(whale_stream_decode_errors_total{{{s()}}}[15m]))",
        },
        # Pipeline
        *(
            {
                "record": "instance_quantile:whale_detection_latency_seconds:histogram_quantile",
                "expr": f"histogram_quantile({q}, sum by ({BY_INSTANCE}, le) "
                f"(rate(whale_detection_latency_seconds_bucket{{{s()}}}[5m])))",
                "labels": {"quantile": q},
            }
            for q in ("0.5", "0.99")
        ),
        # Notifications: failed / (sent + failed); NaN (never alerting) when nothing was tried.
        {
            "record": "instance:whale_notifications_failures_per_attempts:ratio_rate30m",
            "expr": (
                f"sum by ({BY_INSTANCE}) (rate(whale_notifications_failed_total{{{s()}}}[30m]))\n"
                "/\n(\n"
                f"  sum by ({BY_INSTANCE}) (rate(whale_notifications_sent_total{{{s()}}}[30m]))\n"
                "  +\n"
                f"  sum by ({BY_INSTANCE}) (rate(whale_notifications_failed_total{{{s()}}}[30m]))\n"
                ")"
            ),
        },
    ]
    # Accuracy and recall from counters: per instance the increases by result, per job the
    # ratio of the sums, so any set of instances and any window aggregates correctly.
    for window in ACCURACY_WINDOWS:
        rules += [
            {
                # Net of the predictions a correction withdrew (an exporter without that
                # counter has nothing subtracted).
                "record": f"instance:whale_predictions:increase{window}",
                "expr": f"sum by ({BY_INSTANCE}, result) "
                f"(increase(whale_predictions_total{{{s()}}}[{window}]))\n- (\n"
                f"  sum by ({BY_INSTANCE}, result) "
                f"(increase(whale_prediction_withdrawals_total{{{s()}}}[{window}]))\n"
                f"  or sum by ({BY_INSTANCE}, result) "
                f"(increase(whale_predictions_total{{{s()}}}[{window}])) * 0\n)",
            },
            {
                "record": f"job:whale_prediction_accuracy:ratio{window}",
                "expr": f"sum by (job) (instance:whale_predictions:increase{window}"
                f'{{result="hit"}})\n/\nsum by (job) (instance:whale_predictions:increase{window})',
            },
            {
                "record": f"instance:whale_confirmed:increase{window}",
                "expr": f"sum by ({BY_INSTANCE}, seen) "
                f"(increase(whale_confirmed_total{{{s()}}}[{window}]))",
            },
            {
                "record": f"job:whale_recall:ratio{window}",
                "expr": f"sum by (job) (instance:whale_confirmed:increase{window}"
                f'{{seen="mempool"}})\n/\nsum by (job) (instance:whale_confirmed:increase{window})',
            },
        ]
    return [{"name": "whale-exporter.recording", "rules": rules}]


def alert_groups(c: Config) -> list[Group]:
    s = c.sel
    groups: list[Group] = [
        {
            "name": "whale-exporter.availability",
            "rules": [
                _alert(
                    c,
                    "WhaleExporterDown",
                    f"up{{{s()}}} == 0 or absent(up{{{s()}}})",
                    "critical",
                    "Whale exporter target is down.",
                    f"""Prometheus has not scraped {{{{ $labels.job }}}}{{{{ with
                    $labels.instance }}}} at {{{{ . }}}}{{{{ end }}}} successfully for
                    {_words(c.down_for)} (down, or missing from the scrape targets), so no whales
                    are being reported.""",
                    c.down_for,
                ),
                _alert(
                    c,
                    "WhaleExporterMemoryHigh",
                    f"process_resident_memory_bytes{{{s()}}} > {c.memory_high_mib} * 1024 * 1024",
                    "warning",
                    f"Whale exporter resident memory is above {c.memory_high_mib} MiB.",
                    f"""{{{{ $labels.instance }}}} has used {{{{ $value | humanize1024 }}}}B of
                    resident memory for {_words(c.memory_high_for)} (threshold
                    {c.memory_high_mib}MiB).""",
                    c.memory_high_for,
                ),
            ],
        },
        {
            "name": "whale-exporter.stream",
            "rules": [
                _alert(
                    c,
                    "WhaleStreamDisconnected",
                    f"whale_stream_connected{{{s()}}} == 0",
                    "critical",
                    "Whale exporter is not connected to the mempool stream.",
                    f"""{{{{ $labels.instance }}}} has not been connected to the mempool websocket
                    stream for {_words(c.disconnected_for)}, so new whales are not being
                    detected.""",
                    c.disconnected_for,
                ),
                _alert(
                    c,
                    "WhaleStreamStale",
                    f"""
(time() - whale_stream_last_message_timestamp_seconds{{{s()}}} > {c.stale_after_seconds})
and on ({BY_INSTANCE})
(min_over_time(whale_stream_connected{{{s()}}}[5m]) == 1)""",
                    "critical",
                    "Whale exporter stream is connected but silent.",
                    """{{ $labels.instance }} has been connected to the mempool stream for 5
                    minutes but its last message arrived {{ $value | humanizeDuration }} ago.""",
                    "1m",
                ),
                _alert(
                    c,
                    "WhaleStreamReconnectStorm",
                    f"instance:whale_stream_reconnects:increase15m > {c.reconnects_per_15m}",
                    "warning",
                    "Whale exporter keeps reconnecting to the mempool stream.",
                    """{{ $labels.instance }} reconnected {{ $value | printf "%.0f" }} times in
                    the last 15 minutes.""",
                    "5m",
                ),
                _alert(
                    c,
                    "WhaleStreamSequenceGaps",
                    f"instance:whale_stream_sequence_gaps:increase15m > {c.sequence_gaps_per_15m}",
                    "warning",
                    "Whale exporter is missing mempool stream updates.",
                    """{{ $labels.instance }} saw {{ $value | printf "%.0f" }} sequence gaps in
                    the mempool stream in the last 15 minutes; whales may have been missed until
                    backfill catches up.""",
                    "5m",
                ),
                _alert(
                    c,
                    "WhaleStreamDecodeErrors",
                    f"instance:whale_stream_decode_errors:increase15m > {c.decode_errors_per_15m}",
                    "warning",
                    "Whale exporter cannot decode mempool stream data.",
                    """{{ $labels.instance }} failed to decode {{ $value | printf "%.0f" }}
                    stream {{ $labels.kind }}s in the last 15 minutes.""",
                    "5m",
                ),
                _alert(
                    c,
                    "WhaleMempoolIngestStalled",
                    f"""
rate(whale_mempool_transactions_seen_total{{{s()}}}[15m]) == 0
and on ({BY_INSTANCE})
whale_stream_connected{{{s()}}} == 1""",
                    "warning",
                    "Whale exporter is connected but sees no mempool transactions.",
                    """{{ $labels.instance }} is connected to the mempool stream but has not
                    processed a single mempool transaction for 20 minutes.""",
                    "5m",
                ),
                _alert(
                    c,
                    "WhaleChainTipStale",
                    f"""
whale_chain_tip_height{{{s()}}}
and on ({BY_INSTANCE})
changes(whale_chain_tip_height{{{s()}}}[{c.chain_tip_stale_hours}h]) == 0
and on ({BY_INSTANCE})
whale_stream_connected{{{s()}}} == 1
and on ({BY_INSTANCE})
time() - process_start_time_seconds{{{s()}}} > {c.chain_tip_stale_hours} * 3600""",
                    "warning",
                    f"Whale exporter has not seen a new block for {c.chain_tip_stale_hours} hours.",
                    f"""The chain tip on {{{{ $labels.instance }}}} has been stuck at height
                    {{{{ $value | printf "%.0f" }}}} for {c.chain_tip_stale_hours} hours;
                    confirmations and prediction outcomes are not being recorded.""",
                ),
            ],
        },
        {
            "name": "whale-exporter.pipeline",
            "rules": [
                _alert(
                    c,
                    "WhaleBackfillFailing",
                    _failing_for_an_hour(c, "whale_backfill_runs_total"),
                    "warning",
                    "Whale exporter backfill runs are failing.",
                    """{{ $labels.instance }} had {{ $value | printf "%.0f" }} failed backfill runs
                    and no successful one in the last hour; whales missed during stream gaps are
                    not recovered.""",
                    "5m",
                ),
                _alert(
                    c,
                    "WhaleBlockAuditFailing",
                    _failing_for_an_hour(c, "whale_audit_blocks_total"),
                    "warning",
                    "Whale exporter block audits are failing.",
                    """{{ $labels.instance }} had {{ $value | printf "%.0f" }} failed block audits
                    and no successful one in the last hour; whales confirmed without a mempool
                    sighting are not recorded, and recall looks better than it is.""",
                    "15m",
                ),
                _alert(
                    c,
                    "WhaleBlockAuditSkipped",
                    f"""
sum by ({BY_INSTANCE}) (increase(whale_audit_blocks_total{{{s('result="skipped"')}}}[1h])) > 0""",
                    "warning",
                    "Whale exporter left blocks unaudited.",
                    """{{ $labels.instance }} left {{ $value | printf "%.0f" }} blocks unaudited in
                    the last hour (mined during a long absence, or their audit abandoned);
                    whales confirmed in them without a mempool sighting are not recorded.""",
                ),
                _alert(
                    c,
                    "WhaleStoreWriteErrors",
                    f"increase(whale_store_write_errors_total{{{s()}}}[15m]) > 0",
                    "warning",
                    "Whale exporter cannot write to its store.",
                    """{{ $labels.instance }} failed {{ $value | printf "%.0f" }} store writes in
                    the last 15 minutes; whales and outcomes are missing from the API and
                    accuracy figures.""",
                ),
                _alert(
                    c,
                    "WhaleStoreUnhealthy",
                    f"whale_store_healthy{{{s()}}} == 0",
                    "critical",
                    "Whale exporter store has refused writes for 15 minutes.",
                    """{{ $labels.instance }} cannot write its journal or database; whales are
                    held in a bounded backlog in memory, which a restart or a long outage loses,
                    and /readyz answers 503.""",
                    "15m",
                ),
                _alert(
                    c,
                    "WhaleFrameQueueBacklog",
                    f"whale_frame_queue_depth{{{s()}}} > 0",
                    "warning",
                    "Whale exporter frame queue is not draining.",
                    f"""{{{{ $labels.instance }}}} has had stream frames waiting to be processed
                    and stored at every scrape for {_words(c.queue_backlog_for)}
                    ({{{{ $value | printf "%.0f" }}}} waiting now).""",
                    c.queue_backlog_for,
                ),
            ],
        },
        {
            "name": "whale-exporter.predictions",
            "rules": [
                _alert(
                    c,
                    "WhalePredictionAccuracyLow",
                    f"""
job:whale_prediction_accuracy:ratio24h < {c.accuracy_warning}
and on (job)
sum by (job) (instance:whale_predictions:increase24h) >= {c.accuracy_min_predictions}""",
                    "warning",
                    "Whale confirmation predictions are inaccurate.",
                    f"""Over the last 24h only {{{{ $value | humanizePercentage }}}} of
                    confirmation-time predictions of {{{{ $labels.job }}}} were correct (warning
                    below {_percent(c.accuracy_warning)}).""",
                    "15m",
                ),
                _alert(
                    c,
                    "WhaleRecallLow",
                    f"""
job:whale_recall:ratio24h < {c.recall_warning}
and on (job)
sum by (job) (instance:whale_confirmed:increase24h) >= {c.recall_min_confirmed}""",
                    "warning",
                    "Whales confirm without having been caught in the mempool.",
                    f"""Over the last 24h {{{{ $labels.job }}}} caught only
                    {{{{ $value | humanizePercentage }}}} of the confirmed whales in the mempool
                    before they confirmed (warning below {_percent(c.recall_warning)}); the rest
                    were found by the block audit.""",
                    "15m",
                ),
            ],
        },
        {
            "name": "whale-exporter.notifications",
            "rules": [
                *(
                    _alert(
                        c,
                        "WhaleNotificationsFailing",
                        "instance:whale_notifications_failures_per_attempts:ratio_rate30m"
                        f" > {above}",
                        severity,
                        "Whale notifications are failing.",
                        f"""{{{{ $value | humanizePercentage }}}} of whale notification attempts
                        from {{{{ $labels.instance }}}} failed over the last 30 minutes
                        ({severity} above {_percent(above)}).""",
                        for_,
                    )
                    for severity, above, for_ in (
                        ("warning", c.notify_failure_warning, "15m"),
                        ("critical", c.notify_failure_critical, "30m"),
                    )
                ),
                _alert(
                    c,
                    "WhaleNotificationQueueBacklog",
                    f"whale_notification_queue_depth{{{s()}}} > 0",
                    "warning",
                    "Whale notification queue is not draining.",
                    f"""The notification queue on {{{{ $labels.instance }}}} has not been empty at
                    any scrape for {_words(c.queue_backlog_for)}
                    ({{{{ $value | printf "%.0f" }}}} notifications waiting now).""",
                    c.queue_backlog_for,
                ),
            ],
        },
    ]
    if c.watchdog:
        groups.append(
            {
                "name": "whale-exporter.meta",
                "rules": [
                    _alert(
                        c,
                        "WhaleWatchdog",
                        "vector(1)",
                        "info",
                        "Alerting pipeline heartbeat; always firing.",
                        """Always firing from Prometheus{{ with $externalURL }} at {{ . }}{{ end }}.
                        If the dead man's switch stops receiving it, Prometheus, Alertmanager or
                        the path between them is broken.""",
                    )
                ],
            }
        )
    return groups


def _failing_for_an_hour(c: Config, counter: str) -> str:
    """An instance whose `counter{result}` counted errors in the last hour and no success."""

    def increase(result: str) -> str:
        selector = c.sel(f'result="{result}"')
        return f"sum by ({BY_INSTANCE}) (increase({counter}{{{selector}}}[1h])) > 0"

    return f"{increase('error')}\nunless on ({BY_INSTANCE})\n{increase('ok')}"


def _percent(ratio: float) -> str:
    return f"{ratio * 100:g}%"


def _words(duration: str) -> str:
    """`2m` -> `2 minutes`, `1h` -> `1 hour`: for descriptions."""
    units = {"s": "second", "m": "minute", "h": "hour", "d": "day"}
    number, unit = int(duration[:-1]), units[duration[-1]]
    return f"{number} {unit}{'' if number == 1 else 's'}"
