"""The job's durable counters: one small JSON file replaced atomically after every batch.

It says which micro-batch was committed last, how many valid and quarantined events exist,
and which training cut ran last. A batch whose id is not above `last_batch_id` was committed
before a crash and is skipped on replay; one that is, is (re)written idempotently.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

LEDGER_FILE = "ledger.json"


@dataclass(frozen=True)
class TrainingRecord:
    """One training run that the job started: its sequence number and cut."""

    sequence: int
    cut: int
    first_seq: int
    trigger: str  # "threshold" or "max_wait"
    run_id: str | None = None
    accepted: bool | None = None
    # Earlier cuts this run stood in for (training.catch_up: latest), not trained on their own
    skipped_cuts: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "skipped_cuts", tuple(self.skipped_cuts))  # JSON gives a list


@dataclass(frozen=True)
class Ledger:
    last_batch_id: int = -1
    total_valid: int = 0
    total_quarantined: int = 0
    trained_through: int = 0
    waiting_since: float | None = None  # wall time the oldest pending event was committed
    pending_training: TrainingRecord | None = None  # decided, not yet finished
    trainings: tuple[TrainingRecord, ...] = field(default_factory=tuple)
    # Kafka offsets covered so far: partition -> [first, last] (for run manifests)
    offsets: dict[str, list[int]] = field(default_factory=dict)

    @property
    def next_sequence(self) -> int:
        return len(self.trainings) + (1 if self.pending_training else 0) + 1

    def with_(self, **changes: object) -> Ledger:
        return replace(self, **changes)


def load_ledger(state_dir: Path) -> Ledger:
    """The committed ledger, or an empty one on first start."""
    path = state_dir / LEDGER_FILE
    if not path.exists():
        return Ledger()
    data = json.loads(path.read_text())
    pending = data.pop("pending_training")
    trainings = tuple(TrainingRecord(**t) for t in data.pop("trainings"))
    return Ledger(
        **data,
        pending_training=TrainingRecord(**pending) if pending else None,
        trainings=trainings,
    )


def save_ledger(state_dir: Path, ledger: Ledger) -> None:
    """Write the ledger so that a reader sees the old or the new one, never a mix."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ledger-", dir=state_dir)
    with os.fdopen(fd, "w") as out:
        json.dump(asdict(ledger), out, indent=1)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, state_dir / LEDGER_FILE)
