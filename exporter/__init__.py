"""mempool-whale-exporter: Bitcoin mempool whales as Prometheus metrics."""

__version__ = "0.1.0"
