"""Prometheus metrics of the agents app: none yet (the app is a skeleton)."""
