"""Notifications: rules, messages, the Alertmanager relay, and delivery."""
