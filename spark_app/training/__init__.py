"""Training: one run from validated events to a published (or rejected) results run.

The streaming job calls `run_training(spark, events, cfg, sequence=..., event_counts=...)`.
Stages and settings: docs/training.md; what a published run holds: docs/run-format.md.
"""

from __future__ import annotations

from spark_app.training.pipeline import TrainingOutcome, run_training

__all__ = ["TrainingOutcome", "run_training"]
