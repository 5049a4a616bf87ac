"""What the sources hand to the transport: Kafka records, one at a time or in chunks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class Record(NamedTuple):
    """One Kafka record: key (user id bytes), value (JSON bytes), and for a bad record the
    quarantine reason the job must give it (None for a good record)."""

    key: bytes | None
    value: bytes
    expected_reason: str | None


@dataclass
class RecordChunk:
    """Consecutive records as parallel lists (the transport's fast path)."""

    keys: list[bytes | None]
    values: list[bytes]
    bad: dict[int, str] = field(default_factory=dict)  # position in chunk -> expected reason
    due_s: list[float] | None = None  # replay pacing: send no earlier than this after start

    def __len__(self) -> int:
        return len(self.values)

    def records(self) -> list[Record]:
        """The chunk as Record tuples."""
        return [
            Record(key, value, self.bad.get(i))
            for i, (key, value) in enumerate(zip(self.keys, self.values, strict=True))
        ]
