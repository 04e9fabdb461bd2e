"""Every Prometheus series of the exporter, built against an injected registry.

Nothing registers at import time. Values owned elsewhere (pending counts, accuracy windows) are
pushed here from in-memory state, so a scrape never touches DuckDB.
"""

from __future__ import annotations

import functools
import re
import subprocess
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

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
from exporter.core.fees import FEE_KEYS, FeePicture
from exporter.core.models import OUTCOMES, Event, EventKind, Flow, Signal, Urgency
from exporter.core.tracker import Step

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
DECODE_KINDS = ("frame", "message", "transaction")
FEE_TARGETS = ("fastest", "half_hour", "hour", "economy", "minimum")
WINDOWS = ("1h", "24h", "7d")
CONFIRMED_SEEN = ("mempool", "block")
EXAMINE_SOURCES = ("rest", "esplora")
REJECT_REASONS = ("unauthorized", "rate_limited", "body_too_large", "slow_client")
SUPPRESS_REASONS = ("dedup", "rate_limit", "filter")
PREDICTION_RESULTS = ("hit", "miss")
# Whale values in multiples of the threshold, so the buckets fit any --threshold-btc.
VALUE_MULTIPLES = (1, 1.5, 2.5, 5, 10, 25, 50, 100)
URGENCY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# Since 2025 blocks often clear at 0.1-1 sat/vB: resolve the sub-1 range too.
FEE_RATE_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
BLOCK_BUCKETS = (1, 2, 3, 6, 12, 24, 72, 144, 432, 1_008, 2_016)
ERROR_BUCKETS = (-144, -24, -6, -3, -1, 0, 1, 3, 6, 24, 144)
DURATION_BUCKETS = (60, 300, 600, 1_800, 3_600, 7_200, 21_600, 86_400, 259_200, 604_800)
NOTIFY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
LOOP_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
REST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
MAX_REST_ENDPOINTS = 40  # route templates kept as label values; later ones count as "other"
_TXID = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{64}(?![0-9A-Za-z])")
_NUMBER = re.compile(r"(?<=/)\d+(?=/|$)")


def value_buckets(threshold_btc: float) -> tuple[float, ...]:
    """Histogram buckets for whale values: fixed multiples of the configured threshold."""
    return tuple(round(threshold_btc * multiple, 8) for multiple in VALUE_MULTIPLES)


def rest_endpoint(path: str) -> str:
    """A bounded route template for a REST path: txids and hashes become `:hash`, numbers `:n`.

    Only the path is used (never the host or query), so no URL or txid becomes a label value.
    """
    path = path.split("?", 1)[0]
    return _NUMBER.sub(":n", _TXID.sub(":hash", path)) or "/"


class Bookkeeping:
    """What the pipeline's steps, events and state count: the per-event half of `Metrics`.

    The series are built by `Metrics.__init__`; this half only records into them.
    """

    seen: Counter
    decode_errors: Counter
    reorgs: Counter
    transactions: Counter
    volume: Counter
    value: Histogram
    urgency: Histogram
    urgent: Counter
    fee_rate: Histogram
    latency: Histogram
    replacements: Counter
    confirmed: Counter
    outcomes: Counter
    corrections: Counter
    predictions: Counter
    withdrawn_predictions: Counter
    confirmation_blocks: Histogram
    prediction_error: Histogram
    confirmation_duration: Histogram
    pending: Gauge
    accuracy: Gauge
    accuracy_samples: Gauge
    fee_recommended: Gauge
    mempool_transactions: Gauge
    mempool_vbytes: Gauge
    tip_height: Gauge
    price: Gauge

    def record_step(self, step: Step) -> None:
        """Counts of one tracker step: transactions examined, skipped, forks seen."""
        self.seen.inc(step.seen)
        if step.errors:
            self.decode_errors.labels("transaction").inc(len(step.errors))
        if step.forks:
            self.reorgs.inc(step.forks)

    def record_event(
        self, event: Event, *, seen: str | None = None, latency: float | None = None
    ) -> None:
        """One event: a new whale, a replacement, or an outcome counted once per whale.

        A correction to another outcome counts the new one and the withdrawn one (in
        `corrections`); a whale resolved again with the outcome it had counts nothing new.
        `seen` is the recall label of a first confirmation, `latency` a detection's.
        """
        signal = event.signal
        if event.kind is EventKind.DETECTED:
            exemplar = {"txid": signal.txid}  # links a spike to its transaction, not a label
            self.transactions.labels(signal.flow.value).inc(exemplar=exemplar)
            self.volume.labels(signal.flow.value).inc(signal.value_btc)
            self.value.observe(signal.value_btc, exemplar=exemplar)
            if signal.seen_in_mempool:  # a whale found in a block was never scored
                self.urgency.observe(signal.urgency_score)
                self.urgent.labels(signal.urgency_level.value).inc()
            self.fee_rate.observe(signal.effective_fee_rate)
            if latency is not None:
                self.latency.observe(max(latency, 0.0))
        elif event.kind is EventKind.REPLACED:
            self.replacements.inc()
        if seen is not None:
            self.confirmed.labels(seen).inc()
        if not event.changes_outcome or signal.outcome is None:
            return
        self.outcomes.labels(signal.outcome.value).inc()
        if event.previous is not None:
            self.corrections.labels(event.previous.value).inc()
            if signal.corrected_hit is not None:  # counted with the outcome now withdrawn
                self.withdrawn_predictions.labels("hit" if signal.corrected_hit else "miss").inc()
        self.count_prediction(signal)
        blocks = signal.confirmation_blocks
        if blocks is not None:
            self.confirmation_blocks.observe(blocks)
            if signal.predicted_blocks is not None:
                self.prediction_error.observe(blocks - signal.predicted_blocks)
            if signal.resolved_at is not None:
                start = signal.first_seen or signal.detected_at
                self.confirmation_duration.observe(max(signal.resolved_at - start, 0.0))

    def record_state(
        self, pending: Mapping[Flow, int], accuracy: Mapping[str, tuple[float | None, int]]
    ) -> None:
        """Pending whales by flow and the accuracy windows, pushed from in-memory state."""
        for flow in Flow:
            self.pending.labels(flow.value).set(pending.get(flow, 0))
        for window, (ratio, count) in accuracy.items():
            self.accuracy.labels(window).set(ratio if ratio is not None else float("nan"))
            self.accuracy_samples.labels(window).set(count)

    def record_picture(self, picture: FeePicture) -> None:
        if picture.recommended:
            for key in FEE_KEYS.values():
                self.fee_recommended.labels(key).set(picture.recommended[key])
        if picture.mempool_count is not None:
            self.mempool_transactions.set(picture.mempool_count)
        if picture.mempool_vbytes is not None:
            self.mempool_vbytes.set(picture.mempool_vbytes)
        if picture.tip_height is not None:
            self.tip_height.set(picture.tip_height)
        self.price.set(picture.price_usd or float("nan"))  # unknown is NaN, never a price of 0

    def count_prediction(self, signal: Signal) -> None:
        """Count a resolved whale's prediction as a hit or a miss (if it tested one)."""
        hit = signal.hit
        if hit is not None:
            self.predictions.labels("hit" if hit else "miss").inc()


class Notifications:
    """The notifier's series, the other half of `Metrics` (built by its `__init__`)."""

    def _build_notifications(self, p: str, r: CollectorRegistry) -> None:
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
        self.notify_backlog = Gauge(
            f"{p}_notification_backlog_messages",
            "Messages waiting for one destination (what is held while it is down counts as one).",
            ["destination"],
            registry=r,
        )
        self.notify_destination_up = Gauge(
            f"{p}_notification_destination_up",
            "1 while a destination takes messages; 0 while it is down and its alerts are held.",
            ["destination"],
            registry=r,
        )
        self.notify_folded = Counter(
            f"{p}_notifications_folded",
            "Alerts folded into a digest because a destination's queue was full or it was down.",
            ["destination", "reason"],
            registry=r,
        )
        self.notify_dedup_keys = Gauge(
            f"{p}_notification_dedup_keys",
            "Notification dedup keys held in memory "
            "(kept as long as --retention-days, at most 500,000).",
            registry=r,
        )


class Metrics(Bookkeeping, Notifications):
    """Holds every series; tests build one per fresh `CollectorRegistry`."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        process: bool = True,
        threshold_btc: float = 100.0,
        revision: str | None = None,
    ) -> None:
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
            buckets=value_buckets(threshold_btc),
            registry=r,
        )
        self.threshold = Gauge(
            f"{p}_threshold_btc", "Configured whale threshold in BTC.", registry=r
        )
        self.threshold.set(threshold_btc)
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
            f"{p}_stream_messages",
            "Stream messages received, by message type.",
            ["message_type"],
            registry=r,
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
            "Malformed or out-of-range frames, messages or transactions skipped, by kind.",
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
        self.build.info({"version": __version__, "revision": revision or build_revision()})
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
        self.known = Gauge(
            f"{p}_known_mempool_transactions",
            "Txids the exporter knows to be in the mempool (the resync's diff base).",
            registry=r,
        )
        self.resync_examined = Counter(
            f"{p}_resync_examined_transactions",
            "Transactions fetched and examined by a resync or start-up sweep, by source.",
            ["source"],
            registry=r,
        )
        self.resync_skipped = Counter(
            f"{p}_resync_skipped_transactions",
            "Unknown mempool transactions a resync left unexamined (REST budget spent).",
            registry=r,
        )
        self.audit_blocks = Counter(
            f"{p}_audit_blocks",
            "Blocks audited for whales never seen, by result (skipped: mined while away, "
            "beyond the catch-up).",
            ["result"],
            registry=r,
        )
        self.gross_fallbacks = Counter(
            f"{p}_gross_value_fallbacks",
            "Whales recorded by gross value: no prevouts in the stream and REST failed.",
            registry=r,
        )
        self.store_errors = Counter(
            f"{p}_store_write_errors",
            "Store writes that failed (journal appends and DuckDB loads); each is retried.",
            registry=r,
        )
        self.store_healthy = Gauge(
            f"{p}_store_healthy",
            "1 while the store can write (journal and DuckDB), 0 while writes fail.",
            registry=r,
        )
        self.store_backlog = Gauge(
            f"{p}_store_backlog_rows",
            "Rows kept in memory because the disk refused them, waiting for a retry.",
            registry=r,
        )
        self.store_rejected = Counter(
            f"{p}_store_rejected_rows",
            "Rows refused for a value their column cannot hold (kept in <db>.rejected).",
            registry=r,
        )
        self.store_dropped = Counter(
            f"{p}_store_dropped_rows",
            "Rows dropped because the backlog was full during a long store outage.",
            registry=r,
        )
        self.journal_skipped = Counter(
            f"{p}_journal_skipped_lines",
            "Journal lines DuckDB could not read (torn by a crash), skipped.",
            registry=r,
        )
        self.frame_queue = Gauge(
            f"{p}_frame_queue_depth",
            "Stream frames waiting to be processed (the queue in front of the pipeline).",
            registry=r,
        )
        self.loop_lag = Histogram(
            f"{p}_event_loop_lag_seconds",
            "How late the event loop ran a timer: time the loop was busy or blocked.",
            buckets=LOOP_LAG_BUCKETS,
            registry=r,
        )
        self.rest_requests = Counter(
            f"{p}_rest_requests",
            "REST requests to the mempool instance, by route template and HTTP status code "
            "(`error` when no response arrived).",
            ["endpoint", "code"],
            registry=r,
        )
        self.rest_duration = Histogram(
            f"{p}_rest_request_duration_seconds",
            "Duration of one REST request (to the response headers), by route template.",
            ["endpoint"],
            buckets=REST_BUCKETS,
            registry=r,
        )
        self._rest_endpoints: set[str] = set()

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
        self.price = Gauge(f"{p}_price_usd", "Bitcoin price in USD (NaN when unknown).", registry=r)
        self.price.set(float("nan"))

        # Outcomes and accuracy
        self.predictions = Counter(
            f"{p}_predictions",
            "Resolved confirmation predictions, by result (hit: confirmed within the predicted "
            "blocks; miss: later, dropped or expired).",
            ["result"],
            registry=r,
        )
        self.withdrawn_predictions = Counter(
            f"{p}_prediction_withdrawals",
            "Predictions counted in whale_predictions_total and withdrawn by a correction of "
            "their outcome (a dropped whale later mined, a reorg), by the result counted then.",
            ["result"],
            registry=r,
        )
        self.accuracy = Gauge(
            f"{p}_prediction_accuracy_ratio",
            "Share of predictions that held, by window of resolution time (this process only; "
            "for humans: alerts and dashboards use the recording rules over "
            "whale_predictions_total).",
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
        self.corrections = Counter(
            f"{p}_outcome_corrections",
            "Outcomes withdrawn because a correction gave the whale another one, by the outcome "
            "withdrawn: outcomes_total - outcome_corrections_total counts each whale once.",
            ["outcome"],
            registry=r,
        )
        self.reorgs = Counter(
            f"{p}_chain_reorgs", "Forks seen: known blocks that left the chain.", registry=r
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

        self._build_notifications(p, r)

        # HTTP: access control, limits and the live whale stream (SSE)
        self.http_rejected = Counter(
            f"{p}_http_rejected_requests",
            "HTTP requests refused or cut off, by reason.",
            ["reason"],
            registry=r,
        )
        self.web_config_ok = Gauge(
            f"{p}_web_config_last_reload_successful",
            "1 if the last load of the web config file succeeded.",
            registry=r,
        )
        self.web_config_at = Gauge(
            f"{p}_web_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful load of the web config file.",
            registry=r,
        )
        self.sse_clients = Gauge(
            f"{p}_sse_clients", "Clients connected to the whale stream.", registry=r
        )
        self.sse_events = Counter(
            f"{p}_sse_events", "Events written to whale stream clients.", registry=r
        )
        self.sse_dropped = Counter(
            f"{p}_sse_dropped_clients",
            "Whale stream clients cut off for falling behind.",
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
        for result in ("ok", "error", "skipped"):
            self.audit_blocks.labels(result)
        for source in EXAMINE_SOURCES:
            self.resync_examined.labels(source)
        for level in Urgency:
            self.urgent.labels(level.value)
        for target in FEE_TARGETS:
            self.fee_recommended.labels(target)
        for window in WINDOWS:
            self.accuracy.labels(window)
            self.accuracy_samples.labels(window)
        for outcome in OUTCOMES:
            self.outcomes.labels(outcome.value)
            self.corrections.labels(outcome.value)
        for result in PREDICTION_RESULTS:
            self.predictions.labels(result)
            self.withdrawn_predictions.labels(result)
        for seen in CONFIRMED_SEEN:
            self.confirmed.labels(seen)
        for reason in REJECT_REASONS:
            self.http_rejected.labels(reason)
        for reason in SUPPRESS_REASONS:
            self.notify_suppressed.labels(reason)
        self.set_state("connecting")

    def set_state(self, state: str) -> None:
        for name in STREAM_STATES:
            self.state.labels(name).set(1 if name == state else 0)
        self.connected.set(1 if state == "connected" else 0)

    def observe_rest(self, path: str, code: str, seconds: float) -> None:
        """Record one REST request; `path` is reduced to a bounded route template."""
        endpoint = rest_endpoint(path)
        if endpoint not in self._rest_endpoints:
            if len(self._rest_endpoints) >= MAX_REST_ENDPOINTS:
                endpoint = "other"
            else:
                self._rest_endpoints.add(endpoint)
        self.rest_requests.labels(endpoint, code).inc()
        self.rest_duration.labels(endpoint).observe(seconds)


@functools.cache
def build_revision() -> str:
    """The source revision: exporter/REVISION (written by image builds), else git, else unknown."""
    try:
        text = resources.files("exporter").joinpath("REVISION").read_text(encoding="utf-8")
    except OSError:
        text = ""
    if text.strip():
        return text.strip()
    root = Path(__file__).resolve().parent.parent
    if (root / ".git").exists():
        try:
            result = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return "unknown"
        if result.returncode == 0 and result.stdout.strip():
            return result.stdout.strip()
    return "unknown"
