"""Metrics: pure functions on arrays with an explicit seed."""
