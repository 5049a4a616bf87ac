"""What the streaming job runs at each training cut (see `training.runner`)."""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame

from recsys_contract.config import AppConfig
from spark_app.storage import Storage
from spark_app.stream.batch import Trainer
from spark_app.stream.ledger import Ledger, TrainingRecord

log = logging.getLogger(__name__)


def record_only(events: DataFrame, record: TrainingRecord, ledger: Ledger) -> tuple[None, None]:
    """Dry run: log the training set that a run would get, publish nothing."""
    log.info("training run %d (dry run): %d events, seq [%d, %d)", record.sequence,
             record.cut - record.first_seq, record.first_seq, record.cut)
    return None, None


def als_trainer(cfg: AppConfig) -> Trainer:
    """The real run: ALS, evaluation, recommendations, graph, published under results/.

    Publishing is idempotent per training sequence: if a run of this sequence was already
    published (the job was killed after the run's rename, before the ledger recorded it), it
    is recorded as it is, and `latest` set to it if it was accepted; nothing is trained again.
    """
    from spark_app.training import run_training
    from spark_app.training.export import find_published, latest_run_id, point_latest

    def train(events: DataFrame, record: TrainingRecord, ledger: Ledger) -> tuple[str, bool]:
        spark = events.sparkSession
        storage = Storage(spark)
        results = storage.qualify(cfg.paths.results)
        seq_range = (record.first_seq, record.cut)
        found = find_published(storage, results, record.sequence, seq_range)
        if found is not None:
            if found.accepted and latest_run_id(storage, results) != found.run_id:
                point_latest(storage, results, found.run_id)
            log.warning("training run %d was published before a restart as %s; recording it "
                        "instead of training again", record.sequence, found.run_id)
            return found.run_id, found.accepted
        previous = ledger.trainings[-1].cut if ledger.trainings else 0
        outcome = run_training(
            spark,
            events,
            cfg,
            sequence=record.sequence,
            event_counts={
                "training_set": record.cut - record.first_seq,
                "total_valid": ledger.total_valid,
                "new_since_last_run": record.cut - previous,
            },
            kafka_offsets=ledger.offsets,
            last_batch_id=ledger.last_batch_id,
            seq_range=seq_range,
            storage=storage,
        )
        return outcome.run_id, outcome.accepted

    return train


def trainer_for(cfg: AppConfig) -> Trainer:
    return als_trainer(cfg) if cfg.training.runner == "als" else record_only
