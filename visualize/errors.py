"""Named errors of the visualizer: each message is one line saying what is wrong and where."""

from __future__ import annotations


class VisualizeError(Exception):
    """Base class: the CLI prints the message on one line and exits with code 2."""


class ResultsNotFoundError(VisualizeError):
    """The results directory does not exist."""


class NoPublishedRunError(VisualizeError):
    """The results directory holds no published run yet (maybe one being written)."""


class RunNotFoundError(VisualizeError):
    """A run id that was asked for is not among the published runs."""


class IncompleteRunError(VisualizeError):
    """A run lacks a file, or a file is truncated or malformed (half-written run)."""


class EmptyRunError(VisualizeError):
    """A run has no recommendation edges: there is nothing to draw."""
