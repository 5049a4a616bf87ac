"""The streaming job's status file, `results/status.json`: what an operator's tools read about
the running (or stopped) job, beside the published runs. docs/run-format.md describes it too.

The job replaces it atomically (a temporary sibling renamed over it) after every committed
micro-batch, at start and at a clean stop, so a reader sees one whole version. It is published
for readers outside the job (`scripts/status`): they never read the job's private state
(`paths.state`: checkpoint, event store, ledger).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from recsys_contract.runs import _Json

STATUS_FILE = "status.json"  # under paths.results
RUNNING, STOPPED = "running", "stopped"  # a killed job leaves `running` with an old updated_at
# Records quarantined before the job counted reasons (a ledger of an older version) are
# counted under this code.
UNKNOWN_REASON = "unknown"


@dataclass(frozen=True)
class JobStatus(_Json):
    """status.json: the job's progress through the topic, its counters and its training state."""

    updated_at: str  # runs.CREATED_AT_FORMAT, UTC: when this version was written
    state: str  # RUNNING | STOPPED
    topic: str
    # partition -> the next offset the job reads: every record before it is stored or
    # quarantined (the lag is the topic's end offset minus this)
    processed_offsets: dict[str, int]
    last_batch_id: int  # the last micro-batch committed (-1: none yet)
    events_stored: int  # valid events in the job's store
    events_quarantined: int
    quarantined_by_reason: dict[str, int]  # reason code (events.Reason.code_of) -> records
    threshold: int  # training.threshold
    events_until_next_run: int  # valid events the next threshold run still needs
    runs_started: int  # training runs decided (each recorded as pending before it starts)
    runs_published: int
    runs_rejected: int
    training_run: int | None = None  # sequence of the run in progress, or pending after a stop
    last_batch_at: str | None = None  # when the last micro-batch was committed (UTC)
    started_at: str | None = None  # when the job process writing this file started (UTC)
    extra: dict[str, str] = field(default_factory=dict)  # free notes; readers may ignore
