"""Whale prediction accuracy: accuracy and recall from the recording rules, outcomes, errors."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import common as cm

from mixin.config import Config
from mixin.dashboards.panels import (
    BLOCKS,
    SEL,
    base,
    heat,
    no_data_mappings,
    per_hour,
    q,
    quantiles,
    ratio,
    single,
    thresholds,
    ts,
    whales_per_hour,
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
            whales_per_hour(
                "Confirmed whales by where they were seen",
                "Whales confirmed per hour: caught in the mempool first, or found only in the "
                "block (missed in the mempool).",
                per_hour("whale_confirmed_total", "seen"),
            )
        )
        .with_row(db.Row("Outcomes"))
        .with_panel(
            whales_per_hour(
                "Outcomes per hour",
                "How whales left the mempool: confirmed, replaced, dropped or expired.",
                per_hour("whale_outcomes_total", "outcome"),
            )
        )
        .with_panel(
            whales_per_hour(
                "Resolved predictions",
                "Predictions resolved per hour, by result (hit or miss).",
                per_hour("whale_predictions_total", "result"),
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
