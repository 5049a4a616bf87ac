"""Watching the streaming job: its Prometheus endpoint, its published status file, the figures
of its training runs, and the consumer lag read from the query's progress
(docs/observability.md). The batch handler and the entrypoint only call `JobObserver`.
"""
