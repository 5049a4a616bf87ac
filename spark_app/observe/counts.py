"""Plain figures derived from the ledger and the query's progress, shared by the metrics and
the status file: no Spark, no I/O."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from recsys_contract.status import UNKNOWN_REASON
from spark_app.stream.ledger import Ledger

# topic -> partition -> (offset processed through, latest offset on the broker)
KafkaOffsets = dict[str, dict[str, tuple[int, int]]]


def reason_counts(ledger: Ledger) -> dict[str, int]:
    """Quarantined records by reason code; those the ledger holds no reason for (counted by a
    version before reasons were) as UNKNOWN_REASON."""
    counts = {code: n for code, n in ledger.quarantined_by_reason.items() if n}
    uncounted = ledger.total_quarantined - sum(counts.values())
    if uncounted > 0:
        counts[UNKNOWN_REASON] = counts.get(UNKNOWN_REASON, 0) + uncounted
    return counts


def runs_by_outcome(ledger: Ledger) -> tuple[int, int, int]:
    """(started, published, rejected) training runs: a pending run counts as started."""
    published = sum(1 for t in ledger.trainings if t.accepted is True)
    rejected = sum(1 for t in ledger.trainings if t.accepted is False)
    return len(ledger.trainings) + (1 if ledger.pending_training else 0), published, rejected


def kafka_offsets(sources: Iterable[tuple[str | None, str | None]]) -> KafkaOffsets:
    """Per topic and partition, (end, latest) offsets from the `endOffset` and `latestOffset`
    JSON texts of a progress report's sources (`{"topic": {"0": 42}}` for Kafka); a source
    without a latest offset counts as caught up, one that is not Kafka's is left out."""
    found: KafkaOffsets = {}
    for end_text, latest_text in sources:
        end, latest = _offsets_json(end_text), _offsets_json(latest_text)
        for topic, partitions in end.items():
            if not isinstance(partitions, Mapping):
                continue
            newest = latest.get(topic) if isinstance(latest.get(topic), Mapping) else {}
            for partition, offset in partitions.items():
                if isinstance(offset, int):
                    top = newest.get(partition, offset)
                    found.setdefault(topic, {})[str(partition)] = (
                        offset, max(offset, top if isinstance(top, int) else offset))
    return found


def _offsets_json(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def processed_offsets(ledger: Ledger, progress: Mapping[str, tuple[int, int]]) -> dict[str, int]:
    """Per partition, the next offset the job reads: past the last record the ledger holds,
    or the query's end offset, whichever is further (the end offset also covers offsets that
    hold no record, such as transaction markers)."""
    processed = {p: span[1] + 1 for p, span in ledger.offsets.items()}
    for partition, (end, _) in progress.items():
        processed[partition] = max(processed.get(partition, 0), end)
    return dict(sorted(processed.items(), key=lambda item: int(item[0])))
