"""Event timestamps: epoch milliseconds <-> 'YYYY-MM-DDTHH:MM:SS.sssZ' (UTC)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np

MS_PER_DAY = 86_400_000
TIMESTAMP_FORMATS = ("iso", "epoch_ms")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def format_timestamp(ms: int) -> str:
    """One instant as the event's ISO-8601 UTC string with milliseconds."""
    seconds, millis = divmod(ms, 1000)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z"


def parse_instant_ms(text: str) -> int:
    """Epoch ms of an ISO-8601 instant ('2025-01-01T00:00:00Z', offsets allowed) or 'now'.

    A value without a zone is taken as UTC. Raises ValueError when unreadable.
    """
    if text.strip().lower() == "now":
        return now_ms()
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return (parsed - _EPOCH) // timedelta(milliseconds=1)


def second_prefixes(seconds: np.ndarray) -> dict[int, bytes]:
    """b'YYYY-MM-DDTHH:MM:SS' for each distinct epoch second (the slow part, done once each)."""
    unique = np.unique(seconds)
    text = np.datetime_as_string(unique.astype("datetime64[s]"), unit="s").astype("S")
    return dict(zip(unique.tolist(), text.tolist(), strict=True))
