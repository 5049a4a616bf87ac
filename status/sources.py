"""Where the status screen's figures come from: the topic's end offsets on the broker
(kafka-python) and the published files of `paths.results` (a local folder, or HDFS over WebHDFS
as the visualizer reads it). Each source fails alone, with a one-line reason."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from recsys_contract.errors import RunFormatError
from recsys_contract.logs import quiet_kafka_client
from recsys_contract.runs import (
    LATEST,
    MANIFEST,
    METRICS,
    REJECTED_DIR,
    RUNS_DIR,
    Manifest,
    Metrics,
    is_hidden,
    parse_latest,
)
from recsys_contract.status import STATUS_FILE, JobStatus

DEFAULT_WEBHDFS_PORT = 9870  # Hadoop 3's NameNode HTTP port (as the visualizer's)


class SourceError(Exception):
    """A source could not be read; the message is one line."""


def topic_end_offsets(bootstrap_servers: str, topic: str, timeout_seconds: float
                      ) -> dict[str, int]:
    """Partition -> the topic's end offset (the offset the next record will get)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    timeout_ms = int(timeout_seconds * 1000)
    with quiet_kafka_client():
        try:
            consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers.split(","),
                                     bootstrap_timeout_ms=timeout_ms,
                                     request_timeout_ms=timeout_ms + 1000,
                                     enable_auto_commit=False)
        except KafkaError as exc:
            raise SourceError(f"no broker answered at {bootstrap_servers} within "
                              f"{timeout_seconds:g} s ({type(exc).__name__})") from None
        try:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                raise SourceError(f"topic {topic!r} does not exist on {bootstrap_servers}")
            ends = consumer.end_offsets([TopicPartition(topic, p) for p in sorted(partitions)])
        except KafkaError as exc:
            raise SourceError(f"the broker at {bootstrap_servers} did not give the end offsets "
                              f"of {topic!r} ({type(exc).__name__})") from None
        finally:
            consumer.close()
    return {str(tp.partition): int(offset) for tp, offset in sorted(
        ends.items(), key=lambda item: item[0].partition)}


@dataclass(frozen=True)
class RunRow:
    """One finished run as the screen lists it."""

    manifest: Manifest
    metrics: Metrics


class Results:
    """The published files of `paths.results`: a local path, or hdfs:// / webhdfs:// (read over
    WebHDFS, the NameNode's HTTP port)."""

    def __init__(self, results: str, webhdfs_port: int = DEFAULT_WEBHDFS_PORT) -> None:
        self.name = results
        url = urlparse(results)
        self._fs: Any = None
        if url.scheme in ("hdfs", "webhdfs"):
            from fsspec.implementations.webhdfs import WebHDFS

            port = url.port if url.scheme == "webhdfs" and url.port else webhdfs_port
            self._fs = WebHDFS(url.hostname or "127.0.0.1", port=port, skip_instance_cache=True)
            self._root = url.path.rstrip("/") or "/"
        else:
            self._root = url.path if url.scheme == "file" else results

    def read_text(self, *parts: str) -> str | None:
        """A file's text, or None if it does not exist."""
        path = "/".join([self._root.rstrip("/"), *parts])
        try:
            if self._fs is not None:
                return self._fs.cat_file(path).decode("utf-8") if self._fs.isfile(path) else None
            file = Path(path)
            return file.read_text(encoding="utf-8") if file.is_file() else None
        except (OSError, ValueError) as exc:  # an unreachable NameNode, a bad file
            raise SourceError(f"could not read {self.name}/{'/'.join(parts)}: {exc}") from None

    def folders(self, *parts: str) -> list[str]:
        """Visible sub-folder names of a folder ([] if it does not exist)."""
        path = "/".join([self._root.rstrip("/"), *parts])
        try:
            if self._fs is not None:
                if not self._fs.exists(path):
                    return []
                names = [e["name"].rstrip("/").rsplit("/", 1)[-1]
                         for e in self._fs.ls(path, detail=True) if e["type"] == "directory"]
            else:
                folder = Path(path)
                names = [p.name for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
        except OSError as exc:
            raise SourceError(f"could not list {self.name}/{'/'.join(parts)}: {exc}") from None
        return sorted(n for n in names if not is_hidden(n))

    def status(self) -> JobStatus | None:
        """The job's status file, or None if the job never wrote one here."""
        text = self.read_text(STATUS_FILE)
        if text is None:
            return None
        try:
            return JobStatus.from_json(text, f"{self.name}/{STATUS_FILE}")
        except RunFormatError as exc:
            raise SourceError(str(exc)) from None

    def latest(self) -> str | None:
        text = self.read_text(LATEST)
        try:
            return parse_latest(text) if text is not None else None
        except RunFormatError as exc:
            raise SourceError(str(exc)) from None

    def last_runs(self, count: int) -> list[RunRow]:
        """The `count` newest finished runs, published or rejected, newest first (run ids sort
        by time); a run whose files do not read is left out."""
        found = [(run_id, folder) for folder in (RUNS_DIR, REJECTED_DIR)
                 for run_id in self.folders(folder)]
        rows: list[RunRow] = []
        for run_id, folder in sorted(found, reverse=True):
            if len(rows) == count:
                break
            manifest = self.read_text(folder, run_id, MANIFEST)
            metrics = self.read_text(folder, run_id, METRICS)
            if manifest is None or metrics is None:
                continue
            try:
                rows.append(RunRow(Manifest.from_json(manifest), Metrics.from_json(metrics)))
            except RunFormatError:
                continue
        return rows
