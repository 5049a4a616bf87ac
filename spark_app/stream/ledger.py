"""The job's durable counters: one small JSON file replaced atomically after every batch.

It says which micro-batch was committed last, how many valid and quarantined events exist,
and which training cut ran last. A batch whose id is not above `last_batch_id` was committed
before a crash and is skipped on replay; one that is, is (re)written idempotently.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spark_app.storage import Storage

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


def parse_ledger(text: str) -> Ledger:
    """A ledger from its JSON text."""
    data = json.loads(text)
    pending = data.pop("pending_training")
    trainings = tuple(TrainingRecord(**t) for t in data.pop("trainings"))
    return Ledger(
        **data,
        pending_training=TrainingRecord(**pending) if pending else None,
        trainings=trainings,
    )


def load_ledger(state_dir: str | Path, storage: Storage | None = None) -> Ledger:
    """The committed ledger, or an empty one on first start.

    The job reads it through `storage` (any Hadoop filesystem); a reader outside the job
    (the demo, tests) may leave `storage` out to read a local state folder.
    """
    if storage is None:
        path = Path(state_dir) / LEDGER_FILE
        return parse_ledger(path.read_text()) if path.exists() else Ledger()
    text = storage.read_text(f"{str(state_dir).rstrip('/')}/{LEDGER_FILE}")
    return Ledger() if text is None else parse_ledger(text)


def save_ledger(storage: Storage, state_dir: str, ledger: Ledger) -> None:
    """Write the ledger so that a reader sees the old or the new one, never a mix."""
    storage.mkdirs(state_dir)
    storage.write_atomic(f"{state_dir.rstrip('/')}/{LEDGER_FILE}",
                         json.dumps(asdict(ledger), indent=1))
