"""Every Prometheus series of the exporter, built against an injected registry.

Nothing registers at import time. Values owned elsewhere (pending counts, accuracy windows) are
pushed here from in-memory state, so a scrape never touches DuckDB.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from exporter import __version__
from exporter.core.models import OUTCOMES, Flow, Urgency

PREFIX = "whale"
FLOWS = tuple(flow.value for flow in Flow)
STREAM_STATES = ("connecting", "connected", "reconnecting", "failed")
MESSAGE_TYPES = (
    "mempool_transactions",
    "block",
    "blocks",
    "mempool_blocks",
    "stats",
    "fees",
    "pong",
    "projected_block",
    "other",
)
DECODE_KINDS = ("frame", "transaction")
FEE_TARGETS = ("fastest", "half_hour", "hour", "economy", "minimum")
WINDOWS = ("1h", "24h", "7d")
CONFIRMED_SEEN = ("mempool", "block")
SUPPRESS_REASONS = ("dedup", "rate_limit", "filter")
VALUE_BUCKETS = (100, 250, 500, 1_000, 2_500, 5_000, 10_000)
URGENCY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
FEE_RATE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
BLOCK_BUCKETS = (1, 2, 3, 6, 12, 24, 72, 144, 432, 1_008, 2_016)
ERROR_BUCKETS = (-144, -24, -6, -3, -1, 0, 1, 3, 6, 24, 144)
DURATION_BUCKETS = (60, 300, 600, 1_800, 3_600, 7_200, 21_600, 86_400, 259_200, 604_800)
NOTIFY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """Holds every series; tests build one per fresh `CollectorRegistry`."""

    def __init__(self, registry: CollectorRegistry, *, process: bool = True) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # `_created` doubles series
        self.registry = registry
        if process:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
        r = registry
        p = PREFIX

        # Detection
        self.transactions = Counter(
            f"{p}_transactions", "Whale transactions detected, by flow.", ["flow"], registry=r
        )
        self.volume = Counter(
            f"{p}_volume_btc", "BTC moved by detected whales, by flow.", ["flow"], registry=r
        )
        self.value = Histogram(
            f"{p}_transaction_value_btc",
            "Value of detected whales in BTC (self-change excluded).",
            buckets=VALUE_BUCKETS,
            registry=r,
        )
        self.pending = Gauge(
            f"{p}_pending_transactions",
            "Whales waiting for an outcome, by flow.",
            ["flow"],
            registry=r,
        )

        # Stream
        self.connected = Gauge(
            f"{p}_stream_connected", "1 while the WebSocket stream is connected.", registry=r
        )
        self.state = Gauge(
            f"{p}_stream_state", "Stream state; exactly one state is 1.", ["state"], registry=r
        )
        self.reconnects = Counter(
            f"{p}_stream_reconnects", "Stream reconnect attempts.", registry=r
        )
        self.messages = Counter(
            f"{p}_stream_messages", "Stream messages received, by type.", ["type"], registry=r
        )
        self.sequence_gaps = Counter(
            f"{p}_stream_sequence_gaps",
            "Jumps or resets of the mempool sequence (messages lost).",
            registry=r,
        )
        self.last_message = Gauge(
            f"{p}_stream_last_message_timestamp_seconds",
            "Unix time of the last stream frame.",
            registry=r,
        )
        self.decode_errors = Counter(
            f"{p}_stream_decode_errors",
            "Malformed frames or transactions skipped, by kind.",
            ["kind"],
            registry=r,
        )

        # Pipeline
        self.seen = Counter(
            f"{p}_mempool_transactions_seen", "Mempool transactions examined.", registry=r
        )
        self.latency = Histogram(
            f"{p}_detection_latency_seconds",
            "From frame received to whale stored and published.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.build = Info(f"{p}_exporter_build", "Exporter build information.", registry=r)
        self.build.info({"version": __version__})
        self.backfill_runs = Counter(
            f"{p}_backfill_runs", "Backfill sweeps, by result.", ["result"], registry=r
        )
        self.backfill_recovered = Counter(
            f"{p}_backfill_recovered",
            "Whales found by backfill that the stream missed.",
            registry=r,
        )
        self.backfill_last_success = Gauge(
            f"{p}_backfill_last_success_timestamp_seconds",
            "Unix time of the last successful backfill sweep.",
            registry=r,
        )
        self.store_errors = Counter(
            f"{p}_store_write_errors", "DuckDB write batches that failed.", registry=r
        )
        self.store_queue = Gauge(
            f"{p}_store_queue_depth", "Frames waiting to be processed and stored.", registry=r
        )

        # Fees and prediction
        self.urgency = Histogram(
            f"{p}_urgency_score",
            "Urgency score of detected whales (0-1).",
            buckets=URGENCY_BUCKETS,
            registry=r,
        )
        self.fee_rate = Histogram(
            f"{p}_fee_rate_sat_per_vbyte",
            "Effective fee rate of detected whales.",
            buckets=FEE_RATE_BUCKETS,
            registry=r,
        )
        self.urgent = Counter(
            f"{p}_urgent_transactions",
            "Detected whales by urgency level.",
            ["level"],
            registry=r,
        )
        self.replacements = Counter(
            f"{p}_replacements", "Replacements (RBF) of tracked whales.", registry=r
        )
        self.fee_recommended = Gauge(
            f"{p}_fee_recommended_sat_per_vbyte",
            "Recommended fee rate, by target.",
            ["target"],
            registry=r,
        )
        self.mempool_transactions = Gauge(
            f"{p}_mempool_transactions", "Transactions in the mempool.", registry=r
        )
        self.mempool_vbytes = Gauge(
            f"{p}_mempool_vbytes", "Virtual size of the mempool in vbytes.", registry=r
        )
        self.tip_height = Gauge(f"{p}_chain_tip_height", "Height of the chain tip.", registry=r)
        self.price = Gauge(f"{p}_price_usd", "Bitcoin price in USD (0 when unknown).", registry=r)

        # Outcomes and accuracy
        self.accuracy = Gauge(
            f"{p}_prediction_accuracy_ratio",
            "Share of predictions that held, by window of resolution time.",
            ["window"],
            registry=r,
        )
        self.accuracy_samples = Gauge(
            f"{p}_prediction_outcomes",
            "Predictions resolved in the window.",
            ["window"],
            registry=r,
        )
        self.outcomes = Counter(
            f"{p}_outcomes", "Whales resolved, by outcome.", ["outcome"], registry=r
        )
        self.confirmed = Counter(
            f"{p}_confirmed",
            "Whales confirmed in a block, by where they were first seen: in the mempool "
            "(caught early) or only in the block (found by the block audit).",
            ["seen"],
            registry=r,
        )
        self.confirmation_blocks = Histogram(
            f"{p}_confirmation_blocks",
            "Blocks a whale waited for confirmation.",
            buckets=BLOCK_BUCKETS,
            registry=r,
        )
        self.prediction_error = Histogram(
            f"{p}_prediction_error_blocks",
            "Blocks actually waited minus blocks predicted.",
            buckets=ERROR_BUCKETS,
            registry=r,
        )
        self.confirmation_duration = Histogram(
            f"{p}_confirmation_duration_seconds",
            "From first seen to confirmation.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.rows_deleted = Counter(
            f"{p}_store_rows_deleted", "Rows deleted by retention.", registry=r
        )

        # Notifications
        self.notify_sent = Counter(
            f"{p}_notifications_sent", "Notifications delivered.", registry=r
        )
        self.notify_failed = Counter(
            f"{p}_notifications_failed",
            "Notifications that failed after every retry.",
            registry=r,
        )
        self.notify_suppressed = Counter(
            f"{p}_notifications_suppressed",
            "Notifications not sent, by reason.",
            ["reason"],
            registry=r,
        )
        self.notify_queue = Gauge(
            f"{p}_notification_queue_depth", "Notifications waiting to be sent.", registry=r
        )
        self.notify_duration = Histogram(
            f"{p}_notification_duration_seconds",
            "Duration of one notification send.",
            buckets=NOTIFY_BUCKETS,
            registry=r,
        )

        self._init_labels()

    def _init_labels(self) -> None:
        """Create every known label value at zero so dashboards and rates see them at once."""
        for flow in FLOWS:
            self.transactions.labels(flow)
            self.volume.labels(flow)
            self.pending.labels(flow)
        for state in STREAM_STATES:
            self.state.labels(state)
        for kind in MESSAGE_TYPES:
            self.messages.labels(kind)
        for kind in DECODE_KINDS:
            self.decode_errors.labels(kind)
        for result in ("ok", "error"):
            self.backfill_runs.labels(result)
        for level in Urgency:
            self.urgent.labels(level.value)
        for target in FEE_TARGETS:
            self.fee_recommended.labels(target)
        for window in WINDOWS:
            self.accuracy.labels(window)
            self.accuracy_samples.labels(window)
        for outcome in OUTCOMES:
            self.outcomes.labels(outcome.value)
        for seen in CONFIRMED_SEEN:
            self.confirmed.labels(seen)
        for reason in SUPPRESS_REASONS:
            self.notify_suppressed.labels(reason)
        self.set_state("connecting")

    def set_state(self, state: str) -> None:
        for name in STREAM_STATES:
            self.state.labels(name).set(1 if name == state else 0)
        self.connected.set(1 if state == "connected" else 0)
