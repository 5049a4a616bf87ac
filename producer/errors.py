"""Named errors of the sales simulator: what is wrong, and where."""

from __future__ import annotations

from recsys_contract.errors import RecsysError


class ProducerConfigError(RecsysError, ValueError):
    """A generator, replay or transport setting is out of range; the message names it."""


class ReplayFormatError(RecsysError, ValueError):
    """A replay CSV lacks a mapped column or holds values that cannot be read."""


class DeliveryError(RecsysError):
    """Some events were not acknowledged by the broker."""
