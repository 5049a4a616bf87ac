"""The contract package: the parts that need only names work without pyspark, and the typed
manifest and metrics read back what they write."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from recsys_contract.errors import RunFormatError
from recsys_contract.runs import (
    EventCounts,
    GraphFigures,
    KafkaSpan,
    Manifest,
    Metrics,
    format_latest,
    parse_latest,
)

REPO = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter where importing pyspark (or the Spark job) fails, as on a machine
# or in a container without Spark: every module of the producer, the visualizer and the
# contract, the API server and the status screen imports, the simulator generates events and
# the visualizer renders a report.
WITHOUT_SPARK = r"""
import importlib, pkgutil, sys
from pathlib import Path

class NoSpark:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pyspark", "spark_app", "py4j"):
            raise ImportError(f"{name} is not installed here")
        return None

sys.meta_path.insert(0, NoSpark())
for package in ("recsys_contract", "producer", "visualize", "serve", "status"):
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)

from producer.generator import GeneratorConfig, SalesGenerator
from tests.visualize_fixtures import write_run
from visualize.report import render_run

events = list(SalesGenerator(GeneratorConfig(users=20, products=10)).events(50))
results = Path(sys.argv[1])
write_run(results, sequence=1)
rendered = render_run(results)
print(len(events), rendered.index.exists(), "pyspark" in sys.modules)
"""


def test_producer_and_visualizer_work_without_pyspark(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", WITHOUT_SPARK, str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stdout.split()[-3:]) == (0, ["50", "True", "False"]), (
        done.stderr[-3000:])


def _manifest() -> Manifest:
    return Manifest(
        run_id="20261203T100000Z-000002", sequence=2, created_at="2026-12-03T10:00:00Z",
        accepted=True, reason="model ndcg_at_k 0.3 >= baseline 0.1 * (1 - 0)",
        events=EventCounts(20000, 20000, 10000, users=800, products=300, pairs=14000,
                           train_pairs=11200, test_pairs=2800),
        window_events=0, kafka=KafkaSpan("sales", {"0": [0, 19999]}),
        parameters={"als": {"rank": 10}}, timings_seconds={"fit": 4.5},
        spark={"version": "4.2.0"}, graph_engine="dataframe",
    )


def test_manifest_and_metrics_read_back_what_they_write() -> None:
    metrics = Metrics(k=10, split="random", test_users=700,
                      model={"ndcg_at_k": 0.31, "rmse": float("nan")},
                      baseline={"ndcg_at_k": 0.12, "rmse": None},
                      accept_metric="ndcg_at_k", accept_margin=0.0, accepted=True,
                      graph=GraphFigures(1100, 8000, 800, 300, 260, 0.08, 0.41))
    again = (Manifest.from_json(_manifest().to_json()), Metrics.from_json(metrics.to_json()))
    expected_metrics = Metrics(**{**metrics.__dict__, "model": {"ndcg_at_k": 0.31, "rmse": None}})
    assert again == (_manifest(), expected_metrics)


def test_a_reader_ignores_keys_it_does_not_know() -> None:
    data = {**_manifest().to_dict(), "added_by_a_later_version": {"x": 1}}
    assert Manifest.from_dict(data) == _manifest()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sequence": "2"}, r"Manifest.sequence is '2', expected int"),
        ({"accepted": 1}, r"Manifest.accepted is 1, expected bool"),
        ({"events": {"training_set": 1}}, r"Manifest.events lacks 'total_valid'"),
        ({"kafka": {"topic": "sales", "offsets": {"0": [0, "x"]}}},
         r"Manifest.kafka.offsets.0\[1\] is 'x', expected int"),
    ],
)
def test_a_manifest_of_the_wrong_shape_is_named(change: dict, message: str) -> None:
    with pytest.raises(RunFormatError, match=message):
        Manifest.from_dict({**_manifest().to_dict(), **change})


def test_the_latest_pointer_names_one_run() -> None:
    assert (parse_latest(format_latest("20261203T100000Z-000002")), parse_latest("")) == (
        "20261203T100000Z-000002", None)
    with pytest.raises(RunFormatError, match="not a run id"):
        parse_latest("../etc\n")
