"""The Grafana dashboards, built with grafana-foundation-sdk from the mixin's `Config`.

Written by ``python -m mixin`` (``make mixin``) into grafana/dashboards/.

The output is deterministic (sorted keys, fixed panel ids and uids), so the committed JSON can be
compared with a fresh generation; tests/test_dashboards.py fails on any difference.

Conventions the dashboard lint enforces: every dashboard has the ``datasource``, ``job`` and
``instance`` variables; every Prometheus query selects ``job=~"$job",instance=~"$instance"``;
every panel has a unit; every rate()/increase() uses ``$__rate_interval``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import (
    heatmap,
    prometheus,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as hm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from mixin.config import Config

# Fixed uids, matching grafana/provisioning/datasources/datasources.yml.
PROMETHEUS_UID = "prometheus"
INFINITY_UID = "whale-api"
INFINITY_TYPE = "yesoreyeram-infinity-datasource"

PROM = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
INFINITY = dm.DataSourceRef(type_val=INFINITY_TYPE, uid="${api}")

SEL = 'job=~"$job",instance=~"$instance"'

# Units: Grafana ids where one exists, custom "suffix:" units otherwise.
WHALES_PER_HOUR = "suffix: whales/h"
BTC_PER_HOUR = "suffix: BTC/h"
SAT_PER_VB = "suffix: sat/vB"
BLOCKS = "suffix: blocks"


# -- queries -----------------------------------------------------------------------------------


def q(expr: str, legend: str = "__auto", ref: str = "A") -> prometheus.Dataquery:
    """A range query against the dashboard's Prometheus datasource."""
    return (
        prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).range().datasource(PROM)
    )


def heatmap_q(metric: str) -> prometheus.Dataquery:
    """Per-interval increase of a histogram's buckets, as Grafana heatmap frames."""
    expr = f"sum by (le) (increase({metric}_bucket{{{SEL}}}[$__rate_interval]))"
    return q(expr, "{{le}}").format(PromQueryFormat.HEATMAP)


def quantiles(metric: str, qs: Sequence[float]) -> list[prometheus.Dataquery]:
    """histogram_quantile() queries for a histogram, one per quantile."""
    return [
        q(
            f"histogram_quantile({quantile}, sum by (le) "
            f"(rate({metric}_bucket{{{SEL}}}[$__rate_interval])))",
            f"p{round(quantile * 100)}",
            chr(ord("A") + i),
        )
        for i, quantile in enumerate(qs)
    ]


def per_hour(metric: str, by: str = "", legend: str = "__auto") -> prometheus.Dataquery:
    """A counter's rate scaled to events per hour, optionally split by one label."""
    group = f" by ({by})" if by else ""
    expr = f"sum{group} (rate({metric}{{{SEL}}}[$__rate_interval])) * 3600"
    return q(expr, legend if legend != "__auto" or not by else f"{{{{{by}}}}}")


def per_interval(metric: str, by: str = "", legend: str = "__auto", ref: str = "A") -> Any:
    """A counter's increase per $__rate_interval (for rare events shown as bars)."""
    group = f" by ({by})" if by else ""
    expr = f"sum{group} (increase({metric}{{{SEL}}}[$__rate_interval]))"
    return q(expr, legend if legend != "__auto" or not by else f"{{{{{by}}}}}", ref)


class InfinityQuery(cogvariants.Dataquery):
    """An Infinity datasource query; the SDK has no builder for this plugin."""

    def __init__(self, payload: dict[str, object]) -> None:
        self.payload = payload

    def to_json(self) -> dict[str, object]:
        return self.payload


class Infinity(cogbuilder.Builder[InfinityQuery]):
    """A JSON-over-HTTP table query, relative to the datasource's URL (the exporter)."""

    def __init__(self, path: str, root: str, columns: Sequence[tuple[str, str, str]]) -> None:
        self._query = InfinityQuery(
            {
                "refId": "A",
                "datasource": INFINITY.to_json(),
                "type": "json",
                "source": "url",
                "format": "table",
                "parser": "backend",
                "url": path,
                "url_options": {"method": "GET", "data": ""},
                "root_selector": root,
                "columns": [
                    {"selector": selector, "text": text, "type": kind}
                    for selector, text, kind in columns
                ],
                "filters": [],
            }
        )

    def build(self) -> InfinityQuery:
        return self._query


# -- panels ------------------------------------------------------------------------------------

Panel = cogbuilder.Builder[dm.Panel]


def ts(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[cogbuilder.Builder[cogvariants.Dataquery]],
    *,
    stacked: bool = False,
    bars: bool = False,
    w: int = 12,
    h: int = 8,
    configure: Callable[[timeseries.Panel], timeseries.Panel] | None = None,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .datasource(PROM)
        .title(title)
        .description(description)
        .unit(unit)
        .targets(list(targets))
        .span(w)
        .height(h)
        .fill_opacity(30 if bars or stacked else 10)
        .legend(
            cb.VizLegendOptions()
            .show_legend(True)
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
        )
        .tooltip(
            cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING)
        )
    )
    if bars:
        panel = panel.draw_style(cm.GraphDrawStyle.BARS)
    if stacked:
        panel = panel.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
    return configure(panel) if configure else panel


def thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=color) for value, color in steps])
    )


def single(
    title: str,
    description: str,
    unit: str,
    target: cogbuilder.Builder[cogvariants.Dataquery],
    *,
    calc: str = "lastNotNull",
    w: int = 4,
    h: int = 4,
    text_mode: cm.BigValueTextMode = cm.BigValueTextMode.AUTO,
    steps: Sequence[tuple[float | None, str]] = ((None, "green"),),
    mappings: Sequence[dm.ValueMapping] = (),
    configure: Callable[[stat.Panel], stat.Panel] | None = None,
) -> stat.Panel:
    panel = (
        stat.Panel()
        .datasource(PROM)
        .title(title)
        .description(description)
        .unit(unit)
        .with_target(target)
        .span(w)
        .height(h)
        .text_mode(text_mode)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .color_mode(cm.BigValueColorMode.VALUE)
        .reduce_options(cb.ReduceDataOptions().calcs([calc]).values(False))
        .thresholds(thresholds(*steps))
    )
    if mappings:
        panel = panel.mappings(list(mappings))
    return configure(panel) if configure else panel


def heat(title: str, description: str, metric: str, y_unit: str, *, w: int = 12) -> heatmap.Panel:
    return (
        heatmap.Panel()
        .datasource(PROM)
        .title(title)
        .description(description)
        .unit("short")
        .with_target(heatmap_q(metric))
        .span(w)
        .height(8)
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit(y_unit))
        .cell_values(heatmap.CellValues().unit("short"))
        .color(
            heatmap.HeatmapColorOptions()
            .mode(hm.HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .scale(hm.HeatmapColorScale.EXPONENTIAL)
            .exponent(0.5)
        )
    )


def value_map(options: dict[str, tuple[str, str]]) -> dm.ValueMap:
    return dm.ValueMap(
        options={
            value: dm.ValueMappingResult(text=text, color=color, index=i)
            for i, (value, (text, color)) in enumerate(options.items())
        }
    )


def prop(id_val: str, value: object) -> dm.DynamicConfigValue:
    return dm.DynamicConfigValue(id_val=id_val, value=value)


# -- dashboards --------------------------------------------------------------------------------


def base(c: Config, uid: str, title: str, description: str) -> db.Dashboard:
    """A dashboard with the shared variables, links, time range and refresh."""
    tags = list(c.dashboard_tags)
    build_info = (
        f"whale_exporter_build_info{{{c.selector}}}" if c.selector else "whale_exporter_build_info"
    )
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(tags)
        .editable()
        .timezone("browser")
        .time("now-6h", "now")
        .refresh("1m")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .link(
            db.DashboardLink("Whale dashboards")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags(tags)
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
        .with_variable(
            db.DatasourceVariable("datasource")
            .label("Data source")
            .type("prometheus")
            .current(dm.VariableOption(selected=True, text="Prometheus", value=PROMETHEUS_UID))
        )
        .with_variable(
            db.QueryVariable("job")
            .label("Job")
            .datasource(PROM)
            .query(f"label_values({build_info}, job)")
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dm.VariableSort.ALPHABETICAL_ASC)
            .include_all(True)
            .multi(True)
            .current(dm.VariableOption(selected=True, text="All", value="$__all"))
        )
        .with_variable(
            db.QueryVariable("instance")
            .label("Instance")
            .datasource(PROM)
            .query('label_values(whale_exporter_build_info{job=~"$job"}, instance)')
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dm.VariableSort.ALPHABETICAL_ASC)
            .include_all(True)
            .multi(True)
            .current(dm.VariableOption(selected=True, text="All", value="$__all"))
        )
    )


def no_data_mappings(nan: str, empty: str) -> list[dm.ValueMapping]:
    """Say why a ratio has no number: NaN is 0/0 (nothing resolved), empty is no series."""
    return [
        dm.SpecialValueMap(
            options=dm.DashboardSpecialValueMapOptions(
                match=dm.SpecialValueMatch.NA_N,
                result=dm.ValueMappingResult(text=nan, color="text", index=0),
            )
        ),
        dm.SpecialValueMap(
            options=dm.DashboardSpecialValueMapOptions(
                match=dm.SpecialValueMatch.NULL,
                result=dm.ValueMappingResult(text=empty, color="text", index=1),
            )
        ),
        dm.SpecialValueMap(
            options=dm.DashboardSpecialValueMapOptions(
                match=dm.SpecialValueMatch.EMPTY,
                result=dm.ValueMappingResult(text=empty, color="text", index=2),
            )
        ),
    ]


def ratio(record: str, label: str, value: str) -> str:
    """Hits over all from a per-instance recording rule, summed over the selected instances."""
    return f'sum({record}{{{SEL},{label}="{value}"}}) / sum({record}{{{SEL}}})'


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


def recent_whales(c: Config) -> table.Panel:
    recent_columns = [
        ("first_seen", "First seen", "timestamp"),
        ("txid", "Transaction", "string"),
        ("value_btc", "Value", "number"),
        ("value_usd", "Value (USD)", "number"),
        ("flow", "Flow", "string"),
        ("entity", "Entity", "string"),
        ("status", "Status", "string"),
        ("outcome", "Outcome", "string"),
        ("urgency_level", "Urgency", "string"),
        ("fee_rate", "Fee rate", "number"),
        ("predicted_blocks", "Predicted blocks", "number"),
        ("explorer_url", "explorer_url", "string"),
    ]
    return (
        table.Panel()
        .title("Recent whales")
        .description(
            "The latest whales from the exporter's /api/v1/whales API (through the Infinity "
            "data source chosen in `Whale API`: one per exporter), newest first, within the "
            "dashboard's time range (since and until). Click a transaction to open it in the "
            "block explorer."
        )
        .datasource(INFINITY)
        .with_target(
            Infinity(
                "/api/v1/whales?limit=100&since=${__from:date:iso}&until=${__to:date:iso}",
                "whales",
                recent_columns,
            )
        )
        .unit("string")
        .span(24)
        .height(10)
        .sort_by([cb.TableSortByFieldState().display_name("First seen").desc(True)])
        .override_by_name(
            "Transaction",
            [
                prop(
                    "links",
                    [
                        {
                            "title": "Open in block explorer",
                            "url": "${__data.fields.explorer_url}",
                            "targetBlank": True,
                        }
                    ],
                )
            ],
        )
        .override_by_name("explorer_url", [prop("custom.hidden", True)])
        .override_by_name("First seen", [prop("unit", "dateTimeAsIso")])
        .override_by_name("Value", [prop("unit", "currencyBTC"), prop("decimals", 2)])
        .override_by_name("Value (USD)", [prop("unit", "currencyUSD"), prop("decimals", 0)])
        .override_by_name("Fee rate", [prop("unit", SAT_PER_VB), prop("decimals", 1)])
        .override_by_name("Predicted blocks", [prop("unit", "none"), prop("decimals", 0)])
    )


def whale_activity(c: Config) -> db.Dashboard:
    flows = "inflow, outflow, internal or unknown (exchange-tagged addresses)"
    threshold = f"max(whale_threshold_btc{{{SEL}}})"
    return (
        base(
            c,
            "whale-activity",
            "Whale activity",
            "Bitcoin mempool transactions at or above the whale threshold: the latest ones, how "
            "many, how much, where they flow, how urgent they are and what they pay.",
        )
        .with_variable(
            db.DatasourceVariable("api")
            .label("Whale API")
            .type(INFINITY_TYPE)
            .description("The Infinity data source reading one exporter's /api/v1 (per instance).")
            .current(dm.VariableOption(selected=True, text="Whale API", value=INFINITY_UID))
        )
        .with_row(db.Row("Latest"))
        .with_panel(recent_whales(c))
        .with_row(db.Row("Now"))
        .with_panel(
            single(
                "Whales per hour",
                "Average rate of whales detected over the selected time range.",
                WHALES_PER_HOUR,
                per_hour("whale_transactions_total"),
                calc="mean",
            )
        )
        .with_panel(
            single(
                "Whale volume per hour",
                "Average BTC moved by whales per hour over the selected time range.",
                BTC_PER_HOUR,
                per_hour("whale_volume_btc_total"),
                calc="mean",
            )
        )
        .with_panel(
            single(
                "Pending whales",
                "Whales in the mempool now, not yet confirmed, replaced or dropped.",
                "short",
                q(f"sum(whale_pending_transactions{{{SEL}}})"),
            )
        )
        .with_panel(
            single(
                "Whale threshold",
                "The configured whale threshold (--threshold-btc): transactions moving at least "
                "this much are whales.",
                "currencyBTC",
                q(threshold),
            )
        )
        .with_panel(
            single(
                "Fastest fee rate",
                "Fee rate recommended now for confirmation in the next block.",
                SAT_PER_VB,
                q(f'max(whale_fee_recommended_sat_per_vbyte{{{SEL},target="fastest"}})'),
            )
        )
        .with_panel(
            single(
                "BTC price",
                "Bitcoin price used to convert whale values to USD (NaN while unknown).",
                "currencyUSD",
                q(f"max(whale_price_usd{{{SEL}}})"),
                mappings=no_data_mappings("unknown", "unknown"),
            )
        )
        .with_row(db.Row("Flow"))
        .with_panel(
            ts(
                "Whales per hour by flow",
                f"Whales detected per hour, split by flow: {flows}. Exemplar dots link to the "
                "transaction in the block explorer.",
                WHALES_PER_HOUR,
                [per_hour("whale_transactions_total", "flow").exemplar(True)],
                stacked=True,
                bars=True,
            )
        )
        .with_panel(
            ts(
                "Whale volume by flow",
                f"BTC moved by whales per hour, split by flow: {flows}.",
                BTC_PER_HOUR,
                [per_hour("whale_volume_btc_total", "flow")],
                stacked=True,
                bars=True,
            )
        )
        .with_panel(
            ts(
                "Pending vs confirmed",
                "Whales waiting in the mempool (left axis, by flow) against whales confirming "
                "per hour (right axis).",
                "short",
                [
                    q(f"sum by (flow) (whale_pending_transactions{{{SEL}}})", "pending {{flow}}"),
                    q(
                        "sum (rate(whale_outcomes_total{"
                        + SEL
                        + ',outcome="confirmed"}[$__rate_interval])) * 3600',
                        "confirmed per hour",
                        "B",
                    ),
                ],
                w=24,
                configure=lambda p: p.override_by_query(
                    "B",
                    [
                        prop("unit", WHALES_PER_HOUR),
                        prop("custom.axisPlacement", "right"),
                        prop("custom.drawStyle", "bars"),
                    ],
                ),
            )
        )
        .with_row(db.Row("Distribution"))
        .with_panel(
            heat(
                "Whale value distribution",
                "Whales per interval by value bucket: 1, 1.5, 2.5, 5, 10, 25, 50 and 100 times "
                "the whale threshold.",
                "whale_transaction_value_btc",
                "currencyBTC",
            )
        )
        .with_panel(
            ts(
                "Whale value quantiles",
                "Median, 90th and 99th percentile whale value (interpolated within buckets), "
                "with the threshold as a dashed line. Exemplar dots link to the transaction.",
                "currencyBTC",
                [
                    *(
                        target.exemplar(True)
                        for target in quantiles("whale_transaction_value_btc", [0.5, 0.9, 0.99])
                    ),
                    q(threshold, "threshold", "D"),
                ],
                configure=lambda p: p.override_by_name(
                    "threshold", [prop("custom.lineStyle", {"fill": "dash", "dash": [10, 10]})]
                ),
            )
        )
        .with_panel(
            heat(
                "Urgency heatmap",
                "Whales per interval by urgency score (0 = can wait, 1 = needs the next block).",
                "whale_urgency_score",
                "none",
            )
        )
        .with_panel(
            ts(
                "Urgent whales per hour by level",
                "Whales per hour classified as high, medium or low urgency.",
                WHALES_PER_HOUR,
                [per_hour("whale_urgent_transactions_total", "level")],
                stacked=True,
                bars=True,
            )
        )
        .with_row(db.Row("Fees"))
        .with_panel(
            ts(
                "Recommended fee rates",
                "Fee rates recommended for each confirmation target (fastest, half hour, hour, "
                "economy, minimum).",
                SAT_PER_VB,
                [
                    q(
                        f"max by (target) (whale_fee_recommended_sat_per_vbyte{{{SEL}}})",
                        "{{target}}",
                    )
                ],
            )
        )
        .with_panel(
            ts(
                "Whale fee rates",
                "Fee rates whales pay: 10th, 50th and 90th percentile (buckets from 0.1 sat/vB).",
                SAT_PER_VB,
                quantiles("whale_fee_rate_sat_per_vbyte", [0.1, 0.5, 0.9]),
            )
        )
        .with_panel(
            ts(
                "Mempool size",
                "Virtual size of all transactions in the mempool (vbytes).",
                "short",
                [q(f"max(whale_mempool_vbytes{{{SEL}}})", "vbytes")],
                w=8,
                configure=lambda p: p.axis_label("vbytes"),
            )
        )
        .with_panel(
            ts(
                "Mempool transactions",
                "Number of transactions in the mempool.",
                "short",
                [q(f"max(whale_mempool_transactions{{{SEL}}})", "transactions")],
                w=8,
            )
        )
        .with_panel(
            ts(
                "Whale replacements per hour",
                "Whales replaced by a higher-fee version (BIP125 replace-by-fee) per hour.",
                WHALES_PER_HOUR,
                [per_hour("whale_replacements_total", legend="replacements")],
                bars=True,
                w=8,
            )
        )
    )


def prediction_accuracy(c: Config) -> db.Dashboard:
    warn = c.accuracy_warning
    accuracy_steps = ((None, "orange"), (warn, "green"))
    recall_steps = ((None, "orange"), (c.recall_warning, "green"))
    dashboard = base(
        c,
        "whale-prediction-accuracy",
        "Whale prediction accuracy",
        "How well the exporter predicts when whales confirm (accuracy over 1h, 24h and 7d) "
        "and how many confirmed whales it caught in the mempool first (recall); outcomes "
        "and the distribution of prediction errors in blocks.",
    ).with_row(db.Row("Accuracy and recall"))
    for window in ("1h", "24h", "7d"):
        dashboard = dashboard.with_panel(
            single(
                f"Accuracy ({window})",
                f"Share of predictions resolved in the last {window} that held (confirmed "
                "within the predicted blocks), summed over the selected instances from the "
                f"recording rule instance:whale_predictions:increase{window}. "
                f"WhalePredictionAccuracyLow warns on the 24h value below {warn:.0%} (with at "
                f"least {c.accuracy_min_predictions} predictions).",
                "percentunit",
                q(ratio(f"instance:whale_predictions:increase{window}", "result", "hit"), window),
                steps=accuracy_steps,
                mappings=no_data_mappings("no outcomes yet", "no data"),
                configure=lambda p: p.min(0).max(1),
            )
        )
    return (
        dashboard.with_panel(
            single(
                "Recall (24h)",
                "Share of the whales confirmed in the last 24h that the exporter caught in the "
                "mempool before they confirmed (the rest were found by the block audit). "
                f"WhaleRecallLow warns below {c.recall_warning:.0%} (with at least "
                f"{c.recall_min_confirmed} confirmed whales).",
                "percentunit",
                q(ratio("instance:whale_confirmed:increase24h", "seen", "mempool"), "24h"),
                steps=recall_steps,
                mappings=no_data_mappings("no confirmed whales yet", "no data"),
                configure=lambda p: p.min(0).max(1),
            )
        )
        .with_panel(
            single(
                "Outcomes per window",
                "Resolved predictions each accuracy figure is based on (from the recording rules).",
                "short",
                q(
                    "sum(instance:whale_predictions:increase1h{" + SEL + "})",
                    "1h",
                ),
                w=8,
                text_mode=cm.BigValueTextMode.VALUE_AND_NAME,
                configure=lambda p: p.with_target(
                    q("sum(instance:whale_predictions:increase24h{" + SEL + "})", "24h", "B")
                ).with_target(
                    q("sum(instance:whale_predictions:increase7d{" + SEL + "})", "7d", "C")
                ),
            )
        )
        .with_panel(
            ts(
                "Accuracy and recall over time",
                "Prediction accuracy for each window and 24h recall over time, from the "
                f"recording rules; the dashed line marks the {warn:.0%} accuracy warning.",
                "percentunit",
                [
                    *(
                        q(
                            ratio(f"instance:whale_predictions:increase{w}", "result", "hit"),
                            f"accuracy {w}",
                            chr(ord("A") + i),
                        )
                        for i, w in enumerate(("1h", "24h", "7d"))
                    ),
                    q(
                        ratio("instance:whale_confirmed:increase24h", "seen", "mempool"),
                        "recall 24h",
                        "D",
                    ),
                ],
                w=24,
                configure=lambda p: (
                    p.min(0)
                    .max(1)
                    .thresholds(thresholds(*accuracy_steps))
                    .thresholds_style(
                        cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED)
                    )
                ),
            )
        )
        .with_panel(
            ts(
                "Accuracy in this process",
                "The exporter's own in-memory accuracy gauges (one process, for humans; it "
                "restarts with the process). Alerts and the figures above use the recording "
                "rules.",
                "percentunit",
                [q(f"avg by (window) (whale_prediction_accuracy_ratio{{{SEL}}})", "{{window}}")],
                configure=lambda p: p.min(0).max(1),
            )
        )
        .with_panel(
            ts(
                "Confirmed whales by where they were seen",
                "Whales confirmed per hour: caught in the mempool first, or found only in the "
                "block (missed in the mempool).",
                WHALES_PER_HOUR,
                [per_hour("whale_confirmed_total", "seen")],
                stacked=True,
                bars=True,
            )
        )
        .with_row(db.Row("Outcomes"))
        .with_panel(
            ts(
                "Outcomes per hour",
                "How whales left the mempool: confirmed, replaced, dropped or expired.",
                WHALES_PER_HOUR,
                [per_hour("whale_outcomes_total", "outcome")],
                stacked=True,
                bars=True,
            )
        )
        .with_panel(
            ts(
                "Resolved predictions",
                "Predictions resolved per hour, by result (hit or miss).",
                WHALES_PER_HOUR,
                [per_hour("whale_predictions_total", "result")],
                stacked=True,
                bars=True,
            )
        )
        .with_row(db.Row("Errors"))
        .with_panel(
            heat(
                "Prediction error distribution",
                "Confirmed whales per interval by prediction error in blocks (actual minus "
                "predicted: positive means later than predicted).",
                "whale_prediction_error_blocks",
                BLOCKS,
            )
        )
        .with_panel(
            ts(
                "Prediction error quantiles",
                "10th, 50th and 90th percentile prediction error in blocks (actual minus "
                "predicted).",
                BLOCKS,
                quantiles("whale_prediction_error_blocks", [0.1, 0.5, 0.9]),
            )
        )
        .with_panel(
            ts(
                "Blocks to confirm",
                "Blocks from first seen to confirmation: median and 90th percentile.",
                BLOCKS,
                quantiles("whale_confirmation_blocks", [0.5, 0.9]),
            )
        )
        .with_panel(
            ts(
                "Time to confirm",
                "Time from first seen to confirmation: median and 90th percentile.",
                "s",
                quantiles("whale_confirmation_duration_seconds", [0.5, 0.9]),
            )
        )
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


DASHBOARDS: dict[str, Callable[[Config], db.Dashboard]] = {
    "whale-activity.json": whale_activity,
    "prediction-accuracy.json": prediction_accuracy,
    "exporter-health.json": exporter_health,
}


def render(builder: db.Dashboard) -> str:
    """Serialise a dashboard deterministically, numbering panels in layout order."""
    model = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    for number, panel in enumerate(model.get("panels", []), start=1):
        panel["id"] = number
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_all(config: Config) -> dict[str, str]:
    """File name -> JSON of every dashboard."""
    return {name: render(build(config)) for name, build in DASHBOARDS.items()}
