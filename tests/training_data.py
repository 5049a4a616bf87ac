"""Seeded synthetic sales events for the training tests, with or without planted structure.

`planted_events`: users and products fall into taste segments (user u and product p are in
segment u % S and p % S); a user buys from its own segment with probability `in_segment`, else
any product. A recommender that finds the segments beats a most-popular list by far.
`uniform_events`: every purchase is a uniformly random product: nothing to learn.
Rows are tuples in spark_app.schema.EVENT_SCHEMA order; independent of producer/.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from pyspark.sql import DataFrame, SparkSession

from spark_app.schema import EVENT_SCHEMA

START = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
TOPIC = "sales"


def _row(i: int, user: str, product: str, quantity: int, when: datetime,
         rating: float | None = None) -> tuple:
    return (f"e-{i}", user, product, quantity, when, 9.5, TOPIC, i % 2, i // 2, rating)


def planted_events(
    *,
    users: int = 300,
    products: int = 200,
    segments: int = 5,
    events_per_user: int = 15,
    in_segment: float = 0.9,
    seed: int = 7,
) -> list[tuple]:
    """Purchases mostly inside each user's taste segment; ids `u<n>` and `p<n>`."""
    rng = random.Random(seed)
    by_segment = [[p for p in range(products) if p % segments == s] for s in range(segments)]
    rows = []
    for u in range(users):
        own = by_segment[u % segments]
        for _ in range(events_per_user):
            p = rng.choice(own) if rng.random() < in_segment else rng.randrange(products)
            when = START + timedelta(seconds=len(rows))
            rows.append(_row(len(rows), f"u{u}", f"p{p}", rng.randint(1, 3), when))
    rng.shuffle(rows)
    return rows


def uniform_events(
    *, users: int = 1000, products: int = 50, events_per_user: int = 10, seed: int = 11
) -> list[tuple]:
    """Purchases of uniformly random products: no taste to find."""
    rng = random.Random(seed)
    rows = []
    for u in range(users):
        for _ in range(events_per_user):
            when = START + timedelta(seconds=len(rows))
            p = rng.randrange(products)
            rows.append(_row(len(rows), f"u{u}", f"p{p}", rng.randint(1, 3), when))
    return rows


def rated_events(*, users: int = 200, products: int = 60, segments: int = 4,
                 events_per_user: int = 12, seed: int = 5) -> list[tuple]:
    """Explicit feedback with a planted interaction: `quantity` (the rating explicit ALS fits)
    is 4-5 inside the user's segment and 1-2 outside, over random products: user and item
    biases alone cannot predict it."""
    rng = random.Random(seed)
    rows = []
    for u in range(users):
        for p in rng.sample(range(products), events_per_user):
            rating = rng.randint(4, 5) if p % segments == u % segments else rng.randint(1, 2)
            when = START + timedelta(seconds=len(rows))
            rows.append(_row(len(rows), f"u{u}", f"p{p}", rating, when))
    return rows


def events_df(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    """The rows as a DataFrame of validated events (EVENT_SCHEMA)."""
    return spark.createDataFrame(rows, EVENT_SCHEMA)
