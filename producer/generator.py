"""Seeded synthetic sales with a planted structure the recommender should find.

Users belong to taste segments, and each segment prefers a few product categories; within a
category, product popularity is Zipf-like (long tail); user activity is log-normal (a few
heavy buyers). The planted truth is exposed (`SalesGenerator.truth`) so tests and the
training stage can check that it is recoverable. Same config (seed included) -> same stream.

Events are plain dicts (`events()`), or pre-encoded Kafka records (`records()`,
`record_chunks()`) for speed: numpy draws a chunk of events at a time and the JSON text is
built with one bytes template, byte-identical to `json.dumps(event, separators=(",", ":"))`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np

from producer.badevents import BAD_KINDS, DEFAULT_MAX_MESSAGE_BYTES, make_bad_event
from producer.errors import ProducerConfigError
from producer.records import Record, RecordChunk
from producer.timefmt import TIMESTAMP_FORMATS, now_ms, parse_instant_ms, second_prefixes
from recsys_contract.events import EVENT_ID, PRICE, PRODUCT_ID, QUANTITY, TIMESTAMP, USER_ID

log = logging.getLogger(__name__)

DEFAULT_START = "2025-01-01T00:00:00Z"
CHUNK = 16_384  # events drawn per numpy step; fixed, since the stream depends on it
QUANTITY_VALUES = np.array([1, 2, 3, 4, 5], dtype=np.int64)
QUANTITY_PROBS = np.array([0.62, 0.24, 0.09, 0.03, 0.02])
_FLOAT_JSON = json.JSONEncoder(separators=(",", ":"))


@dataclass(frozen=True)
class GeneratorConfig:
    """What the simulated shop looks like. Every field has a working default."""

    users: int = 1_000
    products: int = 500
    segments: int = 5
    categories: int = 0  # 0 = segments * preferred_per_segment, so preferences do not overlap
    preferred_per_segment: int = 2  # categories each segment prefers
    affinity: float = 0.85  # share of a user's purchases inside the segment's preferred categories
    zipf_exponent: float = 1.1  # within a category, the rank-r product has weight r ** -exponent
    activity_sigma: float = 1.0  # log-normal spread of user activity; 0 = all users alike
    seed: int = 42
    start: str = DEFAULT_START  # ISO-8601 instant of the simulated clock's start, or "now"
    mean_gap_ms: float = 100.0  # mean simulated time between events (exponential gaps)
    timestamp_format: str = "iso"  # "iso" ('2025-01-01T00:00:00.000Z') or "epoch_ms" (int)
    with_price: bool = True  # add the unit price (a per-product constant)
    id_prefix: str = ""  # event_id is f"{id_prefix}{seed}-{n}"
    bad_ratio: float = 0.0  # share of records replaced by malformed ones (records() only)
    reference_now_ms: int | None = None  # "now" of far-future bad timestamps; None = wall clock
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES  # oversized bad events exceed this

    @property
    def n_categories(self) -> int:
        return self.categories or self.segments * self.preferred_per_segment

    def validate(self) -> None:
        """Raise ProducerConfigError naming the first setting that is out of range."""
        checks: tuple[tuple[bool, str], ...] = (
            (self.users >= 1, f"users must be >= 1, got {self.users}"),
            (self.segments >= 1, f"segments must be >= 1, got {self.segments}"),
            (
                self.users >= self.segments,
                f"users ({self.users}) must be >= segments ({self.segments})",
            ),
            (self.preferred_per_segment >= 1, "preferred_per_segment must be >= 1"),
            (
                self.n_categories >= self.preferred_per_segment,
                f"categories ({self.n_categories}) must be >= preferred_per_segment "
                f"({self.preferred_per_segment})",
            ),
            (
                self.products >= self.n_categories,
                f"products ({self.products}) must be >= categories ({self.n_categories})",
            ),
            (0.0 <= self.affinity <= 1.0, f"affinity must be in [0, 1], got {self.affinity}"),
            (self.zipf_exponent >= 0, f"zipf_exponent must be >= 0, got {self.zipf_exponent}"),
            (self.activity_sigma >= 0, f"activity_sigma must be >= 0, got {self.activity_sigma}"),
            (self.mean_gap_ms >= 0, f"mean_gap_ms must be >= 0, got {self.mean_gap_ms}"),
            (
                self.timestamp_format in TIMESTAMP_FORMATS,
                f"timestamp_format must be one of {TIMESTAMP_FORMATS}, "
                f"got {self.timestamp_format!r}",
            ),
            (0.0 <= self.bad_ratio <= 1.0, f"bad_ratio must be in [0, 1], got {self.bad_ratio}"),
            (self.seed >= 0, f"seed must be >= 0, got {self.seed}"),
        )
        for ok, message in checks:
            if not ok:
                raise ProducerConfigError(message)
        try:
            parse_instant_ms(self.start)
        except ValueError as exc:
            raise ProducerConfigError(f"start: not an ISO-8601 instant: {self.start!r}") from exc


@dataclass(frozen=True)
class PlantedTruth:
    """The structure hidden in the stream: who is in which segment, what each segment likes."""

    user_segment: dict[str, int]
    product_category: dict[str, int]
    segment_categories: dict[int, tuple[int, ...]]
    product_rank: dict[str, int]  # popularity rank inside the product's category, 0 = top

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for --truth-out)."""
        return {
            "user_segment": self.user_segment,
            "product_category": self.product_category,
            "segment_categories": {str(s): list(c) for s, c in self.segment_categories.items()},
            "product_rank": self.product_rank,
        }


@dataclass(frozen=True)
class _Columns:
    first_seq: int
    user: np.ndarray
    product: np.ndarray
    quantity: np.ndarray
    ts_ms: np.ndarray


def _template(epoch_ms: bool, with_price: bool) -> bytes:
    """The bytes %-template of one event, fields in the same order as the event dict."""
    timestamp = f'"{TIMESTAMP}":%d' if epoch_ms else f'"{TIMESTAMP}":"%b.%03dZ"'
    parts = [
        f'"{EVENT_ID}":"%b%d"',
        f'"{USER_ID}":"%b"',
        f'"{PRODUCT_ID}":"%b"',
        f'"{QUANTITY}":%d',
        timestamp,
    ]
    if with_price:
        parts.append(f'"{PRICE}":%b')
    return ("{" + ",".join(parts) + "}").encode()


class SalesGenerator:
    """Builds the simulated shop from a config, then draws event streams from it."""

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        self.config = config or GeneratorConfig()
        self.config.validate()
        cfg = self.config
        world_seq, self._stream_seq, self._bad_seq = np.random.SeedSequence(cfg.seed).spawn(3)
        rng = np.random.default_rng(world_seq)
        n_cat, k = cfg.n_categories, cfg.preferred_per_segment

        # Segments: balanced, randomly assigned; segment s prefers k categories (disjoint if
        # there are enough categories).
        self._user_segment = rng.permutation(np.arange(cfg.users) % cfg.segments)
        cat_perm = rng.permutation(n_cat)
        self._segment_prefs = np.array(
            [[cat_perm[(s * k + j) % n_cat] for j in range(k)] for s in range(cfg.segments)],
            dtype=np.int64,
        )
        # Products: balanced over categories; a random popularity order inside each category.
        self._product_category = rng.permutation(np.arange(cfg.products) % n_cat)
        self._product_rank = np.zeros(cfg.products, dtype=np.int64)
        order_parts, cdf_parts = [], []
        for c in range(n_cat):
            members = rng.permutation(np.flatnonzero(self._product_category == c))
            self._product_rank[members] = np.arange(len(members))
            weights = np.arange(1, len(members) + 1, dtype=np.float64) ** -cfg.zipf_exponent
            cdf = np.cumsum(weights) / weights.sum()
            cdf[-1] = 1.0
            order_parts.append(members)
            cdf_parts.append(c + cdf)  # category c's CDF lives in (c, c + 1]
        self._product_order = np.concatenate(order_parts)
        self._product_cdf = np.concatenate(cdf_parts)
        # Users: log-normal activity, so a few users buy much more than the rest.
        activity = rng.lognormal(0.0, cfg.activity_sigma, cfg.users)
        self._user_cdf = np.cumsum(activity) / activity.sum()
        self._quantity_cdf = np.cumsum(QUANTITY_PROBS)
        self._quantity_cdf[-1] = 1.0
        # Unit prices: log-normal around 15, two decimals, one per product.
        prices = np.maximum(np.round(rng.lognormal(np.log(15.0), 0.9, cfg.products), 2), 0.5)
        self._price = prices.tolist()
        self._price_json = [_FLOAT_JSON.encode(p).encode() for p in self._price]

        self.user_ids = [f"u{i}" for i in range(cfg.users)]
        self.product_ids = [f"p{i}" for i in range(cfg.products)]
        self._user_keys = [u.encode() for u in self.user_ids]
        self._product_keys = [p.encode() for p in self.product_ids]
        self._id_prefix = f"{cfg.id_prefix}{cfg.seed}-"
        self._epoch_ms = cfg.timestamp_format == "epoch_ms"
        self._template = _template(self._epoch_ms, cfg.with_price)
        self._start_ms = parse_instant_ms(cfg.start)
        self._now_ms = cfg.reference_now_ms if cfg.reference_now_ms is not None else now_ms()

    # --- planted truth ----------------------------------------------------------------------
    @property
    def truth(self) -> PlantedTruth:
        """User -> segment, product -> category, segment -> preferred categories."""
        return PlantedTruth(
            user_segment=dict(zip(self.user_ids, self._user_segment.tolist(), strict=True)),
            product_category=dict(
                zip(self.product_ids, self._product_category.tolist(), strict=True)
            ),
            segment_categories={
                s: tuple(row) for s, row in enumerate(self._segment_prefs.tolist())
            },
            product_rank=dict(zip(self.product_ids, self._product_rank.tolist(), strict=True)),
        )

    # --- drawing ----------------------------------------------------------------------------
    def _columns(self) -> Iterator[_Columns]:
        """Endless chunks of event columns, from the start of the stream."""
        cfg = self.config
        rng = np.random.default_rng(self._stream_seq)
        last_ms, seq = self._start_ms, 0
        n_users, k, n_cat = cfg.users, cfg.preferred_per_segment, cfg.n_categories
        last_product = len(self._product_order) - 1
        while True:
            user = np.searchsorted(self._user_cdf, rng.random(CHUNK), "right")
            user = np.minimum(user, n_users - 1)
            preferred = rng.random(CHUNK) < cfg.affinity
            category = np.where(
                preferred,
                self._segment_prefs[self._user_segment[user], rng.integers(0, k, CHUNK)],
                rng.integers(0, n_cat, CHUNK),
            )
            position = np.searchsorted(self._product_cdf, category + rng.random(CHUNK), "right")
            product = self._product_order[np.minimum(position, last_product)]
            draws = rng.random(CHUNK)
            quantity = QUANTITY_VALUES[np.searchsorted(self._quantity_cdf, draws, "right")]
            gaps = np.rint(rng.exponential(cfg.mean_gap_ms, CHUNK)).astype(np.int64)
            ts_ms = last_ms + np.cumsum(gaps)
            last_ms = int(ts_ms[-1])
            yield _Columns(seq, user, product, quantity, ts_ms)
            seq += CHUNK

    def _event(self, cols: _Columns, i: int, prefixes: dict[int, bytes] | None = None) -> dict:
        """Row i of a chunk as an event dict."""
        user, product = int(cols.user[i]), int(cols.product[i])
        ms = int(cols.ts_ms[i])
        if self._epoch_ms:
            timestamp: str | int = ms
        else:
            prefixes = prefixes or second_prefixes(cols.ts_ms[i : i + 1] // 1000)
            timestamp = f"{prefixes[ms // 1000].decode()}.{ms % 1000:03d}Z"
        event: dict[str, Any] = {
            EVENT_ID: f"{self._id_prefix}{cols.first_seq + i}",
            USER_ID: self.user_ids[user],
            PRODUCT_ID: self.product_ids[product],
            QUANTITY: int(cols.quantity[i]),
            TIMESTAMP: timestamp,
        }
        if self.config.with_price:
            event[PRICE] = self._price[product]
        return event

    def events(self, n: int | None = None) -> Iterator[dict[str, Any]]:
        """The first n good events (all of them if n is None) as plain dicts."""
        def all_events() -> Iterator[dict[str, Any]]:
            for cols in self._columns():
                prefixes = None if self._epoch_ms else second_prefixes(cols.ts_ms // 1000)
                for i in range(len(cols.user)):
                    yield self._event(cols, i, prefixes)

        return islice(all_events(), n)

    def record_chunks(self, n: int | None = None) -> Iterator[RecordChunk]:
        """The first n records (endless if None) in chunks, bad ones mixed in at bad_ratio.

        A bad record replaces the good event of its position (which it was made from), so
        the stream has n records in all. Bad kinds cycle through BAD_KINDS in order.
        """
        cfg = self.config
        bad_rng = np.random.default_rng(self._bad_seq)
        bad_count, remaining = 0, n
        template, id_prefix = self._template, self._id_prefix.encode()
        for cols in self._columns():
            size = CHUNK if remaining is None else min(CHUNK, remaining)
            if size <= 0:
                return
            seqs = range(cols.first_seq, cols.first_seq + size)
            users = cols.user[:size].tolist()
            keys: list[bytes | None] = [self._user_keys[u] for u in users]
            products = cols.product[:size].tolist()
            product_keys = [self._product_keys[p] for p in products]
            quantities = cols.quantity[:size].tolist()
            ts_ms = cols.ts_ms[:size]
            columns: list[Any] = [
                [id_prefix] * size,
                seqs,
                keys,
                product_keys,
                quantities,
            ]
            prefixes: dict[int, bytes] | None = None
            if self._epoch_ms:
                columns.append(ts_ms.tolist())
            else:
                seconds = ts_ms // 1000
                prefixes = second_prefixes(seconds)
                columns.append([prefixes[s] for s in seconds.tolist()])
                columns.append((ts_ms % 1000).tolist())
            if cfg.with_price:
                columns.append([self._price_json[p] for p in products])
            values = [template % row for row in zip(*columns, strict=True)]
            chunk = RecordChunk(keys, values)
            if cfg.bad_ratio > 0:
                draws = bad_rng.random(CHUNK)[:size]
                for i in np.flatnonzero(draws < cfg.bad_ratio).tolist():
                    kind = BAD_KINDS[bad_count % len(BAD_KINDS)]
                    bad = make_bad_event(
                        kind,
                        self._event(cols, i, prefixes),
                        variant=bad_count // len(BAD_KINDS),
                        now_ms=self._now_ms,
                        epoch_ms=self._epoch_ms,
                        max_message_bytes=cfg.max_message_bytes,
                    )
                    keys[i], values[i] = bad.key, bad.value
                    chunk.bad[i] = bad.expected_reason
                    bad_count += 1
            yield chunk
            if remaining is not None:
                remaining -= size

    def records(self, n: int | None = None) -> Iterator[Record]:
        """The first n records one at a time (see record_chunks)."""
        for chunk in self.record_chunks(n):
            yield from chunk.records()
