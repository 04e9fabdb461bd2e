"""Building blocks of the dashboards: queries, panels, the shared variables and mappings.

Conventions the dashboard lint enforces: every dashboard has the ``datasource``, ``job`` and
``instance`` variables; every Prometheus query selects ``job=~"$job",instance=~"$instance"``;
every panel has a unit; every rate()/increase() uses ``$__rate_interval``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import (
    heatmap,
    prometheus,
    stat,
    timeseries,
)
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
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


def whales_per_hour(
    title: str, description: str, query: cogbuilder.Builder[cogvariants.Dataquery]
) -> timeseries.Panel:
    """Whales counted per hour, split by one label: stacked bars."""
    return ts(title, description, WHALES_PER_HOUR, [query], stacked=True, bars=True)


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
