"""Named errors shared by the parts: one line saying what is wrong and what to do."""

from __future__ import annotations


class RecsysError(Exception):
    """Base class: an error whose message says what is wrong and what to do."""


class InvalidConfigError(RecsysError):
    """A configuration file or value is wrong; the message names the key."""


class BrokerUnavailableError(RecsysError):
    """The Kafka broker did not answer within the configured deadline."""


class RunFormatError(RecsysError):
    """A run's file does not follow docs/run-format.md (missing, cut short, wrong type)."""
