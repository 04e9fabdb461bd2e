"""The monitoring mixin: alert rules, recording rules, dashboards and Kubernetes objects.

Everything is generated from one `Config` (mixin/config.py), the way node-mixin reads
config.libsonnet: the scrape selector, thresholds, the runbook URL and an optional Watchdog.
`make mixin` (python -m mixin) writes the committed files; tests/test_mixin.py diff-checks them.
"""
