"""The status screen as text, from plain values: no I/O, tested on its own."""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass, field

from recsys_contract.runs import CREATED_AT_FORMAT
from recsys_contract.status import STATUS_FILE, JobStatus
from status.sources import RunRow


@dataclass(frozen=True)
class Snapshot:
    """Everything the screen shows, with the reason a part is missing."""

    results: str
    topic: str
    bootstrap_servers: str
    status: JobStatus | None = None
    status_error: str | None = None
    end_offsets: dict[str, int] | None = None
    broker_error: str | None = None
    runs: list[RunRow] = field(default_factory=list)
    latest: str | None = None
    runs_error: str | None = None


def epoch(text: str) -> float:
    return float(calendar.timegm(time.strptime(text, CREATED_AT_FORMAT)))


def ago(text: str | None, now: float) -> str:
    """`12 s ago`, `5 min ago`, `3.2 h ago`, `2.0 d ago`."""
    if not text:
        return "never"
    seconds = max(0.0, now - epoch(text))
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} d ago"


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def render(s: Snapshot, now: float) -> str:
    """The screen: job, topic and lag, counters, quarantine by reason, last runs."""
    lines = [f"recsys-stream status at {time.strftime(CREATED_AT_FORMAT, time.gmtime(now))}",
             f"results   {s.results}", f"topic     {s.topic} on {s.bootstrap_servers}"]
    st = s.status
    if s.broker_error:
        lines.append(f"broker    {s.broker_error}: end offsets and lag unknown")
    if st is None:
        why = s.status_error or (f"no {STATUS_FILE} in {s.results}: the job has not run here "
                                 "yet (or paths.results differs)")
        lines.append(f"job       {why}")
    else:
        batch = (f"last batch {st.last_batch_id} {ago(st.last_batch_at, now)}"
                 if st.last_batch_id >= 0 else "no batch yet")
        lines.append(f"job       {st.state}, {batch}; status written {ago(st.updated_at, now)}")
    lines += ["", *offset_table(st.processed_offsets if st else {}, s.end_offsets)]
    if st is not None:
        lines += ["", *counters(st)]
    lines += ["", *run_table(s)]
    return "\n".join(lines) + "\n"


def offset_table(processed: dict[str, int], ends: dict[str, int] | None) -> list[str]:
    """Per partition: the topic's end offset, the job's processed offset, the lag."""
    partitions = sorted({*processed, *(ends or {})}, key=int)
    if not partitions:
        return ["offsets   none known yet (no broker answer, no batch committed)"]
    rows = [("partition", "end offset", "processed", "lag")]
    total_end = total_done = 0
    for p in partitions:
        done = processed.get(p, 0)
        end = ends.get(p) if ends is not None else None
        total_done += done
        total_end += end or 0
        rows.append((p, "?" if end is None else str(end), str(done),
                     "?" if end is None else str(max(0, end - done))))
    if len(partitions) != 1:
        rows.append(("total", "?" if ends is None else str(total_end), str(total_done),
                     "?" if ends is None else str(max(0, total_end - total_done))))
    return [f"{a:>9}  {b:>12}  {c:>12}  {d:>10}" for a, b, c, d in rows]


def counters(st: JobStatus) -> list[str]:
    seen = st.events_stored + st.events_quarantined
    share = f" ({100 * st.events_quarantined / seen:.2f}%)" if seen else ""
    training = (f"; run {st.training_run} "
                f"{'in progress' if st.state == 'running' else 'pending (runs at the next start)'}"
                if st.training_run is not None else "")
    lines = [
        f"events    {st.events_stored} stored, {st.events_quarantined} quarantined{share}",
        f"training  {st.events_until_next_run} events until the next run (threshold "
        f"{st.threshold}){training}",
        f"runs      {st.runs_started} started, {st.runs_published} published, "
        f"{st.runs_rejected} rejected",
    ]
    if st.quarantined_by_reason:
        lines += ["", "quarantine by reason"]
        for code, count in sorted(st.quarantined_by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {code:<24} {count:>10}")
    return lines


def run_table(s: Snapshot) -> list[str]:
    if s.runs_error:
        return [f"runs      {s.runs_error}"]
    if not s.runs:
        return ["last runs: none finished yet"]
    lines = ["last runs (newest first; * = latest, served)",
             f"  {'run':<25} {'verdict':<10} {'metric':<14} {'model':>8} {'baseline':>9} "
             f"{'events':>9} {'seconds':>8}"]
    for row in s.runs:
        m, x = row.manifest, row.metrics
        mark = "*" if m.run_id == s.latest else " "
        verdict = "published" if m.accepted else "rejected"
        total = m.timings_seconds.get("total")
        lines.append(
            f"{mark} {m.run_id:<25} {verdict:<10} {x.accept_metric:<14} "
            f"{_figure(x.model.get(x.accept_metric)):>8} "
            f"{_figure(x.baseline.get(x.accept_metric)):>9} {m.events.training_set:>9} "
            f"{'-' if total is None else f'{total:.1f}':>8}")
    return lines
