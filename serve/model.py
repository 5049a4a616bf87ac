"""The served model: one run's factors, purchases and popular list, and the fold-in since its cut.

A `ServingModel` answers every request (the routes only translate HTTP). It is built from one
run in the background and then swapped in whole by the `ModelManager` (serve/manager.py), so a
request, which takes `manager.current` once, never mixes two runs. The run's arrays never
change after the build; the speed layer's thread adds fold-in state per user, each user's
state replaced by one dictionary assignment (an immutable `UserState`), which a request reads
in one lookup.

Users: those with a model vector come first (rows 0..model_users-1); users of the run who
bought something but got no vector (all their pairs held out for evaluation) follow, with a
vector folded in at build time. Products: those with item factors; a bought product without
factors is still left out of that user's popular answer.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys_contract.runs import Manifest, Metrics
from serve.foldin import FoldInParams, fold_in, gram, top_n, unit_rows
from serve.loading import RunData

log = logging.getLogger(__name__)

SOURCE_MODEL = "model"  # the run's own user vector
SOURCE_FOLD_IN = "fold_in"  # a vector (or purchases) folded in after the run's cut
SOURCE_POPULAR = "popular"  # no vector: the run's popular list
SOURCES = (SOURCE_MODEL, SOURCE_FOLD_IN, SOURCE_POPULAR)
_NO_ROWS = np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class UserState:
    """A user's fold-in state; replaced whole on each new purchase, never changed."""

    vector: np.ndarray | None  # None: no purchase of a product with factors yet
    bought: np.ndarray  # product rows bought (sorted), left out of the answers
    others: frozenset[str]  # bought products without factors
    quantities: dict[int, float] = field(repr=False)  # product row -> units: the fold-in input


@dataclass(frozen=True)
class Answer:
    """Products (best first) with their scores and where the list came from."""

    source: str
    product_ids: list[str]
    scores: list[float] | np.ndarray


class ServingModel:
    """One run, ready to answer; see the module docstring."""

    def __init__(self, data: RunData, *, max_fold_in_users: int) -> None:
        started = time.perf_counter()
        self.run_id = data.run_id
        self.manifest: Manifest = data.manifest
        self.metrics: Metrics = data.metrics
        self.params: FoldInParams = data.params
        self.exclude_purchased = data.exclude_purchased
        self.loaded_at = time.time()
        self.max_fold_in_users = max_fold_in_users

        # Products: factors (rows x rank), transposed for one contiguous product per request.
        self.product_ids: list[str] = data.product_ids.to_pylist()
        self.product_row = {product: row for row, product in enumerate(self.product_ids)}
        self.items = data.item_vectors
        self.items_t = np.ascontiguousarray(self.items.T)
        self.unit = unit_rows(self.items)
        self.unit_t = np.ascontiguousarray(self.unit.T)
        self.yty = gram(self.items)

        # Users: the model's first, then those with purchases only.
        purchases = data.purchases
        buyers = pc.unique(purchases.user_ids)
        extra = pc.filter(buyers, pc.invert(pc.is_in(buyers, value_set=data.user_ids)))
        all_users = pa.concat_arrays([data.user_ids, extra.cast(data.user_ids.type)])
        self.model_users = len(data.user_ids)
        self.user_row = {user: row for row, user in enumerate(all_users.to_pylist())}

        # Each user's purchases (CSR by user row): product rows and units.
        user_rows = pc.index_in(purchases.user_ids, value_set=all_users).to_numpy(
            zero_copy_only=False
        )
        product_rows = pc.fill_null(
            pc.index_in(purchases.product_ids, value_set=data.product_ids), -1
        ).to_numpy(zero_copy_only=False)
        known = product_rows >= 0
        order = np.argsort(user_rows[known], kind="stable")
        self.bought_rows = product_rows[known][order].astype(np.int64)
        self.bought_units = purchases.quantity[known][order]
        counts = np.bincount(user_rows[known], minlength=len(all_users))
        self.indptr = np.concatenate(([0], np.cumsum(counts)))
        self.bought_others: dict[int, frozenset[str]] = {}
        if not known.all():
            others = pc.filter(purchases.product_ids, pa.array(~known)).to_pylist()
            for row, product in zip(user_rows[~known].tolist(), others, strict=True):
                self.bought_others[row] = self.bought_others.get(row, frozenset()) | {product}

        # Vectors: the model's, then folded in for the users with purchases only.
        vectors = np.zeros((len(all_users), self.items.shape[1]), dtype=np.float32)
        vectors[: self.model_users] = data.user_vectors
        self.has_vector = np.zeros(len(all_users), dtype=bool)
        self.has_vector[: self.model_users] = True
        for row in range(self.model_users, len(all_users)):
            rows, units = self._bought(row)
            vector = fold_in(self.items, self.yty, rows, units, self.params) if len(rows) else None
            if vector is not None:
                vectors[row] = vector
                self.has_vector[row] = True
        self.user_vectors = vectors

        self.popular = [
            (product, score, self.product_row.get(product, -1)) for product, score in data.popular
        ]
        # Each stored user's top n ranked ahead of any request (rank_ahead): product rows, -1
        # past the end of a shorter list, and their scores; rows below `_ahead_rows` are done.
        # A user's vector and purchases do not change within a run (a later purchase moves the
        # user to fold_ins), so a shorter list is a prefix of the one kept.
        self._ahead = np.empty((0, 0), dtype=np.int32)
        self._ahead_scores = np.empty((0, 0), dtype=np.float32)
        self._ahead_rows = 0
        self.fold_ins: dict[str, UserState] = {}  # written by the speed layer's thread only
        self.fold_in_events = 0
        self.build_seconds = time.perf_counter() - started
        log.info(
            "run %s ready: %d users (%d with purchases only), %d products, rank %d, in %.2f s",
            self.run_id, len(all_users), len(all_users) - self.model_users,
            len(self.product_ids), self.items.shape[1], self.build_seconds,
        )

    # --- answers (any thread) ------------------------------------------------------------------

    def _bought(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.indptr[row], self.indptr[row + 1]
        return self.bought_rows[lo:hi], self.bought_units[lo:hi]

    def recommend(self, user_id: str, n: int) -> Answer:
        """The user's top n products: model or fold-in vector, else the popular list."""
        state = self.fold_ins.get(user_id)
        if state is not None:
            return self._rank(state.vector, state.bought, state.others, n, SOURCE_FOLD_IN)
        row = self.user_row.get(user_id)
        if row is None:
            return self.popular_answer(n)
        if row < self._ahead_rows and n <= self._ahead.shape[1] and self.has_vector[row]:
            best = self._ahead[row, :n]
            best = best[best >= 0]
            return Answer(SOURCE_MODEL if row < self.model_users else SOURCE_FOLD_IN,
                          [self.product_ids[i] for i in best.tolist()],
                          self._ahead_scores[row, : len(best)].tolist())
        vector = self.user_vectors[row] if self.has_vector[row] else None
        source = SOURCE_MODEL if row < self.model_users else SOURCE_FOLD_IN
        others = self.bought_others.get(row, frozenset())
        answer = self._rank(vector, self._bought(row)[0], others, n, source)
        return Answer(answer.source, answer.product_ids, list(map(float, answer.scores)))

    def _rank(
        self,
        vector: np.ndarray | None,
        bought: np.ndarray,
        others: frozenset[str],
        n: int,
        source: str,
    ) -> Answer:
        if vector is None:
            exclude = bought if self.exclude_purchased else None
            return self.popular_answer(n, exclude, others if self.exclude_purchased else None)
        best, scores = self._best(vector, bought, n)
        return Answer(source, [self.product_ids[i] for i in best], scores)

    def _best(self, vector: np.ndarray, bought: np.ndarray, n: int) -> tuple[Any, Any]:
        """The n best product rows for `vector` (purchases left out if so configured), and
        their scores."""
        scores = vector @ self.items_t
        best = top_n(scores, n, bought if self.exclude_purchased else None)
        return best, scores[best]

    def rank_ahead(self, n: int, stop: threading.Event | None = None) -> int:
        """Rank every stored user's top n before anyone asks (a thread of the run watcher's
        calls this after a load), so that `recommend` reads a list of at most n instead of
        ranking the catalog: each list is the one `recommend` would rank. Returns the users
        ranked; `stop` ends it early (the rest are ranked per request, as before)."""
        users = len(self.user_row)
        top = np.full((users, n), -1, dtype=np.int32)
        top_scores = np.zeros((users, n), dtype=np.float32)
        self._ahead, self._ahead_scores = top, top_scores  # before any row is counted done
        for row in range(users):
            if stop is not None and stop.is_set():
                return row
            if self.has_vector[row]:
                best, scores = self._best(self.user_vectors[row], self._bought(row)[0], n)
                top[row, : len(best)] = best
                top_scores[row, : len(best)] = scores
            self._ahead_rows = row + 1
        return users

    def popular_answer(
        self, n: int, exclude: np.ndarray | None = None, others: frozenset[str] | None = None
    ) -> Answer:
        """The run's popular list (score: purchases), less the products given."""
        entries = self.popular
        if (exclude is not None and len(exclude)) or others:
            rows = set(exclude.tolist()) if exclude is not None else set()
            skip = others or frozenset()
            entries = [e for e in entries if e[2] not in rows and e[0] not in skip]
        entries = entries[:n]
        return Answer(SOURCE_POPULAR, [e[0] for e in entries], [e[1] for e in entries])

    def similar(self, product_id: str, n: int) -> Answer | None:
        """The n products nearest to `product_id` by cosine of the item factors; None if the
        run has no factors for it."""
        row = self.product_row.get(product_id)
        if row is None:
            return None
        scores = self.unit[row] @ self.unit_t
        best = top_n(scores, n, np.array([row]))
        return Answer(SOURCE_MODEL, [self.product_ids[i] for i in best], scores[best])

    # --- fold-in (the speed layer's thread only) -------------------------------------------------

    def apply_purchase(self, user_id: str, product_id: str, quantity: float) -> bool:
        """Fold one valid purchase in: the product leaves the user's answers and the user's
        vector is solved again. False if the fold-in is full (fold_in_max_users)."""
        state = self.fold_ins.get(user_id)
        if state is None:
            if len(self.fold_ins) >= self.max_fold_in_users:
                return False
            row = self.user_row.get(user_id)
            if row is None:
                quantities: dict[int, float] = {}
                others: frozenset[str] = frozenset()
                vector = None
            else:
                rows, units = self._bought(row)
                quantities = dict(zip(rows.tolist(), units.tolist(), strict=True))
                others = self.bought_others.get(row, frozenset())
                vector = self.user_vectors[row] if self.has_vector[row] else None
        else:
            quantities, others, vector = dict(state.quantities), state.others, state.vector
        product = self.product_row.get(product_id)
        if product is None:
            others = others | {product_id}
        else:
            quantities[product] = quantities.get(product, 0.0) + float(quantity)
            rows = np.fromiter(quantities, dtype=np.int64, count=len(quantities))
            units = np.fromiter(quantities.values(), dtype=np.float64, count=len(quantities))
            vector = fold_in(self.items, self.yty, rows, units, self.params)
        bought = np.array(sorted(quantities), dtype=np.int64) if quantities else _NO_ROWS
        self.fold_ins[user_id] = UserState(vector, bought, others, quantities)
        self.fold_in_events += 1
        return True
