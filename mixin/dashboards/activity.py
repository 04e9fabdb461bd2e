"""Whale activity: the latest whales first, then rates, flows, distributions and fees."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import (
    table,
)
from grafana_foundation_sdk.models import dashboard as dm

from mixin.config import Config
from mixin.dashboards.panels import (
    BTC_PER_HOUR,
    INFINITY,
    INFINITY_TYPE,
    INFINITY_UID,
    SAT_PER_VB,
    SEL,
    WHALES_PER_HOUR,
    Infinity,
    base,
    heat,
    no_data_mappings,
    per_hour,
    prop,
    q,
    quantiles,
    single,
    ts,
    whales_per_hour,
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
            whales_per_hour(
                "Whales per hour by flow",
                f"Whales detected per hour, split by flow: {flows}. Exemplar dots link to the "
                "transaction in the block explorer.",
                per_hour("whale_transactions_total", "flow").exemplar(True),
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
            whales_per_hour(
                "Urgent whales per hour by level",
                "Whales per hour classified as high, medium or low urgency.",
                per_hour("whale_urgent_transactions_total", "level"),
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
