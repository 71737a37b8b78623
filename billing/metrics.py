"""Prometheus metrics of the billing app: none yet (the app is a skeleton)."""
