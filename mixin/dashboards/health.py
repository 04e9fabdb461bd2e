"""Whale exporter health: firing alerts and status first, then stream, REST, store and resources."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import (
    statetimeline,
    table,
)
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from mixin.config import Config
from mixin.dashboards.panels import (
    PROM,
    SEL,
    base,
    per_interval,
    prop,
    q,
    quantiles,
    single,
    thresholds,
    ts,
    value_map,
)


def firing_alerts() -> table.Panel:
    """Firing Whale* alerts, from Prometheus' ALERTS series (job-level ones have no instance)."""
    return (
        table.Panel()
        .datasource(PROM)
        .title("Firing alerts")
        .description(
            "Whale alerts firing now (Prometheus' ALERTS series), with severity and instance. "
            "WhaleWatchdog always fires while alerting works; the runbook link is in each alert."
        )
        .with_target(
            q('ALERTS{alertstate="firing",alertname=~"Whale.+"}', "{{alertname}}")
            .instant()
            .format(PromQueryFormat.TABLE)
        )
        .unit("none")
        .span(24)
        .height(5)
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {
                        "Time": True,
                        "Value": True,
                        "__name__": True,
                        "alertstate": True,
                    },
                    "indexByName": {"alertname": 0, "severity": 1, "job": 2, "instance": 3},
                },
            )
        )
        .sort_by([cb.TableSortByFieldState().display_name("severity")])
        .no_value("No whale alert is firing.")
    )


def exporter_health(c: Config) -> db.Dashboard:
    return (
        base(
            c,
            "whale-exporter-health",
            "Whale exporter health",
            "Is the exporter up, connected and keeping up: stream state, reconnects, gaps, "
            "message rates, detection latency, backfill, store, notifications and resources.",
        )
        .with_row(db.Row("Status"))
        .with_panel(firing_alerts())
        .with_panel(
            single(
                "Scrape",
                "Whether Prometheus can scrape each exporter (WhaleExporterDown).",
                "none",
                q(f"up{{{SEL}}}", "{{instance}}"),
                steps=((None, "red"), (1, "green")),
                mappings=[value_map({"0": ("DOWN", "red"), "1": ("UP", "green")})],
            )
        )
        .with_panel(
            single(
                "Stream state",
                "Current websocket state: connecting, connected, reconnecting or failed.",
                "none",
                q(f"whale_stream_state{{{SEL}}} == 1", "{{state}}"),
                text_mode=cm.BigValueTextMode.NAME,
            )
        )
        .with_panel(
            single(
                "Last message",
                "Seconds since the last stream message (WhaleStreamStale above "
                f"{c.stale_after_seconds} s).",
                "s",
                q(f"time() - max(whale_stream_last_message_timestamp_seconds{{{SEL}}})", "age"),
                steps=((None, "green"), (60, "orange"), (c.stale_after_seconds, "red")),
            )
        )
        .with_panel(
            single(
                "Last successful backfill",
                "When the backfill last recovered missed transactions successfully.",
                "dateTimeFromNow",
                q(f"max(whale_backfill_last_success_timestamp_seconds{{{SEL}}}) * 1000", "last"),
                mappings=[value_map({"0": ("never", "text")})],
            )
        )
        .with_panel(
            single(
                "Uptime",
                "Time since the exporter process started.",
                "s",
                q(f"time() - min(process_start_time_seconds{{{SEL}}})", "uptime"),
            )
        )
        .with_panel(
            single(
                "Version",
                "Exporter version and source revision (whale_exporter_build_info).",
                "none",
                q(
                    f"max by (version, revision) (whale_exporter_build_info{{{SEL}}})",
                    "{{version}} ({{revision}})",
                ),
                text_mode=cm.BigValueTextMode.NAME,
            )
        )
        .with_row(db.Row("Stream"))
        .with_panel(
            statetimeline.Panel()
            .datasource(PROM)
            .title("Stream connection")
            .description("Websocket connection per exporter (WhaleStreamDisconnected after 2m).")
            .unit("none")
            .with_target(q(f"whale_stream_connected{{{SEL}}}", "{{instance}}"))
            .mappings([value_map({"0": ("disconnected", "red"), "1": ("connected", "green")})])
            .show_value(cm.VisibilityMode.NEVER)
            .span(24)
            .height(5)
        )
        .with_panel(
            ts(
                "Message rate by type",
                "Stream messages received per second, by message type.",
                "mps",
                [
                    q(
                        f"sum by (message_type) (rate(whale_stream_messages_total{{{SEL}}}"
                        "[$__rate_interval]))",
                        "{{message_type}}",
                    )
                ],
                stacked=True,
            )
        )
        .with_panel(
            ts(
                "Mempool transactions processed",
                "Mempool transactions examined per second (WhaleMempoolIngestStalled at zero).",
                "suffix: tx/s",
                [
                    q(
                        f"sum (rate(whale_mempool_transactions_seen_total{{{SEL}}}"
                        "[$__rate_interval]))",
                        "transactions",
                    )
                ],
            )
        )
        .with_panel(
            ts(
                "Reconnects and sequence gaps",
                "Stream reconnects and sequence gaps per interval (WhaleStreamReconnectStorm, "
                "WhaleStreamSequenceGaps).",
                "short",
                [
                    per_interval("whale_stream_reconnects_total", legend="reconnects"),
                    per_interval("whale_stream_sequence_gaps_total", legend="gaps", ref="B"),
                ],
                bars=True,
                w=8,
            )
        )
        .with_panel(
            ts(
                "Decode errors",
                "Frames and transactions that failed to decode, per interval.",
                "short",
                [per_interval("whale_stream_decode_errors_total", "kind")],
                bars=True,
                w=8,
            )
        )
        .with_panel(
            ts(
                "Detection latency",
                "From a stream frame's arrival to its whales being stored and published.",
                "s",
                quantiles("whale_detection_latency_seconds", [0.5, 0.9, 0.99]),
                w=8,
            )
        )
        .with_row(db.Row("REST and event loop"))
        .with_panel(
            ts(
                "REST requests by code",
                "REST requests to the mempool instance per second, by HTTP status code "
                "(`error`: no response). 429 means the instance is rate-limiting us.",
                "reqps",
                [
                    q(
                        f"sum by (code) (rate(whale_rest_requests_total{{{SEL}}}"
                        "[$__rate_interval]))",
                        "{{code}}",
                    )
                ],
                stacked=True,
                w=8,
            )
        )
        .with_panel(
            ts(
                "REST errors by endpoint",
                "REST requests per second that failed (status 4xx/5xx or no response), by route "
                "template.",
                "reqps",
                [
                    # `or ... * 0`: every endpoint shows, at 0 until it fails.
                    q(
                        "sum by (endpoint) (rate(whale_rest_requests_total"
                        f'{{{SEL},code!~"2..|3.."}}[$__rate_interval])) or sum by (endpoint) '
                        f"(rate(whale_rest_requests_total{{{SEL}}}[$__rate_interval])) * 0",
                        "{{endpoint}}",
                    )
                ],
                w=8,
            )
        )
        .with_panel(
            ts(
                "REST latency",
                "REST request duration to the response headers: median and 99th percentile.",
                "s",
                quantiles("whale_rest_request_duration_seconds", [0.5, 0.99]),
                w=8,
            )
        )
        .with_panel(
            ts(
                "Event-loop lag",
                "How late the exporter's event loop ran a 0.5 s timer (median, 99th percentile "
                "and worst bucket): time it was busy or blocked, which delays every frame.",
                "s",
                quantiles("whale_event_loop_lag_seconds", [0.5, 0.99]),
                w=24,
            )
        )
        .with_row(db.Row("Backfill and store"))
        .with_panel(
            ts(
                "Backfill runs",
                "Backfill runs by result and transactions recovered, per interval.",
                "short",
                [
                    per_interval("whale_backfill_runs_total", "result"),
                    per_interval("whale_backfill_recovered_total", legend="recovered", ref="B"),
                ],
                bars=True,
                w=8,
            )
        )
        .with_panel(
            ts(
                "Frame queue depth",
                "Stream frames waiting to be processed and stored (WhaleFrameQueueBacklog).",
                "short",
                [q(f"sum by (instance) (whale_frame_queue_depth{{{SEL}}})", "{{instance}}")],
                w=8,
            )
        )
        .with_panel(
            ts(
                "Store writes and retention",
                "Failed store writes and rows deleted by retention, per interval.",
                "short",
                [
                    per_interval("whale_store_write_errors_total", legend="write errors"),
                    per_interval("whale_store_rows_deleted_total", legend="rows deleted", ref="B"),
                ],
                bars=True,
                w=8,
            )
        )
        .with_row(db.Row("Notifications"))
        .with_panel(
            ts(
                "Notifications",
                "Notifications sent and failed per interval (WhaleNotificationsFailing).",
                "short",
                [
                    per_interval("whale_notifications_sent_total", legend="sent"),
                    per_interval("whale_notifications_failed_total", legend="failed", ref="B"),
                ],
                bars=True,
                w=6,
                configure=lambda p: p.override_by_name(
                    "failed",
                    [prop("color", {"mode": "fixed", "fixedColor": "red"})],
                ),
            )
        )
        .with_panel(
            ts(
                "Suppressed notifications",
                "Notifications not sent because of deduplication, rate limiting or filters.",
                "short",
                [per_interval("whale_notifications_suppressed_total", "reason")],
                bars=True,
                stacked=True,
                w=6,
            )
        )
        .with_panel(
            ts(
                "Notification queue depth",
                "Notifications waiting to be sent (WhaleNotificationQueueBacklog).",
                "short",
                [
                    q(
                        f"sum by (instance) (whale_notification_queue_depth{{{SEL}}})",
                        "{{instance}}",
                    )
                ],
                w=6,
            )
        )
        .with_panel(
            ts(
                "Notification duration",
                "Time to deliver a notification: median and 99th percentile.",
                "s",
                quantiles("whale_notification_duration_seconds", [0.5, 0.99]),
                w=6,
            )
        )
        .with_row(db.Row("Resources"))
        .with_panel(
            ts(
                "Resident memory",
                "Resident set size per exporter; WhaleExporterMemoryHigh fires above "
                f"{c.memory_high_mib} MiB.",
                "bytes",
                [q(f"process_resident_memory_bytes{{{SEL}}}", "{{instance}}")],
                configure=lambda p: p.thresholds(
                    thresholds((None, "green"), (c.memory_high_mib * 1024 * 1024, "red"))
                ).thresholds_style(
                    cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED)
                ),
            )
        )
        .with_panel(
            ts(
                "CPU",
                "CPU time used per second of wall time (1 = one full core).",
                "percentunit",
                [
                    q(
                        f"rate(process_cpu_seconds_total{{{SEL}}}[$__rate_interval])",
                        "{{instance}}",
                    )
                ],
            )
        )
    )
