"""The numpy core of the scorer: rank a chunk of users against the whole catalog.

Plain functions over numpy and Arrow arrays, no Spark: scoring.py ships this module by value to
the Python workers (they need not import spark_app) and calls `score_chunk` once per chunk of
users. Unit tests call the functions directly.

For each user of a chunk the scorer computes, in blocks of users:
- the prediction of every held-out pair of a known product (for the RMSE);
- the ranking with the user's training products masked, whose first k products are the
  evaluated list (precision, recall, NDCG, MAP at k: Spark's RankingMetrics definitions);
- if top_n > 0, the top_n of the same ranking without the held-out products either: the
  recommendations, with everything the user bought left out (`exclude_held`).
The popularity baseline goes through the same code with item score = -popularity rank.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

RANKING_METRICS = ("precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k")
TOP_K_GROUPS = 256  # column groups whose maxima bound a row's k-th best score (top_k)
SCORE_CELLS_PER_BLOCK = 1 << 20  # users x items scores held at once by a worker


def item_matrix(items: Any) -> tuple[np.ndarray, np.ndarray]:
    """(ids sorted ascending, factors in that order) of an Arrow list of (id, features)."""
    item_idx, item_feat = items.flatten()
    ids = item_idx.to_numpy(zero_copy_only=False).astype(np.int64)
    flat = np.asarray(item_feat.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    feats = flat.reshape(len(ids), len(flat) // len(ids) if len(ids) else 0)
    order = np.argsort(ids, kind="stable")
    return ids[order], feats[order]


def list_lengths(lists: Any) -> np.ndarray:
    """Length of every list of an Arrow list array (0 for null)."""
    return pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)


def lookup(lengths: np.ndarray, values: np.ndarray, ids: np.ndarray) -> tuple[Any, Any, Any]:
    """(row, column in sorted `ids`, mask of the values found) of flattened per-row lists."""
    rows = np.repeat(np.arange(len(lengths)), lengths)
    if len(ids) == 0:
        found = np.zeros(len(values), dtype=bool)
        return rows[found], rows[found], found
    pos = np.minimum(np.searchsorted(ids, values), len(ids) - 1)
    found = ids[pos] == values
    return rows[found], pos[found], found


def _candidates(scores: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of every score at or above its row's kk-th best (ties included)."""
    n_rows, n_cols = scores.shape
    width = n_cols // TOP_K_GROUPS
    if kk < n_cols and width >= 2 and kk <= TOP_K_GROUPS:
        # A lower bound of each row's kk-th best: the kk-th best of the maxima of disjoint
        # column groups (kk distinct columns reach it). Group g holds the columns g, g + G,
        # g + 2G, ...: the maxima are an element-wise maximum of contiguous slices. Only the
        # groups whose maximum reaches the bound hold candidates, and the tail columns.
        groups = TOP_K_GROUPS
        grouped = scores[:, : width * groups].reshape(n_rows, width, groups)
        maxima = grouped.max(axis=1)
        bound = np.partition(maxima, groups - kk, axis=1)[:, groups - kk]
        group_rows, group_ids = np.nonzero(maxima >= bound[:, None])
        members = grouped[group_rows, :, group_ids]
        hit, offset = np.nonzero(members >= bound[group_rows, None])
        tail_rows, tail_cols = np.nonzero(scores[:, width * groups :] >= bound[:, None])
        rows = np.concatenate((group_rows[hit], tail_rows))
        cols = np.concatenate((offset * groups + group_ids[hit], tail_cols + width * groups))
        return rows, cols
    if kk < n_cols:
        kth = np.partition(scores, n_cols - kk, axis=1)[:, n_cols - kk]
        return np.nonzero(scores >= kth[:, None])
    return np.nonzero(np.ones(scores.shape, dtype=bool))


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns and scores of each row's k best finite scores, best first (ties: lower column
    first); (rows x min(k, columns)) arrays padded with -1 / -inf."""
    n_rows, n_cols = scores.shape
    kk = min(k, n_cols)
    rows, cols = _candidates(scores, kk)
    vals = scores[rows, cols]
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    pos = np.arange(len(rows)) - np.searchsorted(rows, np.arange(n_rows))[rows]
    keep = (pos < kk) & np.isfinite(vals)
    top_cols = np.full((n_rows, kk), -1, dtype=np.int64)
    top_vals = np.full((n_rows, kk), -np.inf, dtype=np.float32)
    top_cols[rows[keep], pos[keep]] = cols[keep]
    top_vals[rows[keep], pos[keep]] = vals[keep]
    return top_cols, top_vals


def ranking_sums(top_ids: np.ndarray, held_rows: np.ndarray, held_ids: np.ndarray,
                 k: int) -> np.ndarray:
    """Sums over rows of precision, recall, NDCG and MAP at k (Spark's RankingMetrics).

    top_ids: (rows x <= k) recommended ids best first, -1 = none; held_rows/held_ids: the
    held-out ids of each row, flattened (duplicates count once). A row without held-out ids
    scores 0, as in Spark.
    """
    n_rows, width = top_ids.shape
    span = int(max(top_ids.max(initial=0), held_ids.max(initial=0))) + 2
    held_keys = np.unique(held_rows.astype(np.int64) * span + held_ids)
    n_held = np.bincount(held_keys // span, minlength=n_rows)[:n_rows]
    hit = np.isin(np.arange(n_rows, dtype=np.int64)[:, None] * span + top_ids, held_keys)
    hit &= top_ids >= 0
    has_held = n_held > 0
    cut = np.minimum(n_held, k)
    precision = hit.sum(axis=1) / k
    recall = np.where(has_held, hit.sum(axis=1) / np.maximum(n_held, 1), 0.0)
    precision_at_hits = (hit * np.cumsum(hit, axis=1) / np.arange(1, width + 1)).sum(axis=1)
    average_precision = np.where(has_held, precision_at_hits / np.maximum(cut, 1), 0.0)
    gains = 1.0 / np.log(np.arange(k) + 2.0)
    dcg = (hit * gains[:width]).sum(axis=1)
    ideal = np.concatenate(([0.0], np.cumsum(gains)))[cut]
    ndcg = np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1.0), 0.0)
    return np.array([precision.sum(), recall.sum(), ndcg.sum(), average_precision.sum()])


@dataclass
class Ranked:
    """What ranking a chunk of users gives: the metric sums over the evaluated users, the
    products their lists hold (coverage), the RMSE's parts and the recommendation rows."""

    sums: np.ndarray = field(default_factory=lambda: np.zeros(len(RANKING_METRICS)))
    products: list[np.ndarray] = field(default_factory=list)
    squared_error: float = 0.0
    scored: int = 0
    recs: list[tuple[np.ndarray, ...]] = field(default_factory=list)
    diversity: float = 0.0  # sum over users with >= 2 recommendations of their list's ILD
    diverse_users: int = 0


@dataclass(frozen=True)
class UserLists:
    """A chunk's users: factors, and per user the products bought in training (masked) and
    the held-out products with their labels, as flattened lists."""

    factors: np.ndarray
    bought_lengths: np.ndarray
    bought_ids: np.ndarray
    held_lengths: np.ndarray
    held_ids: np.ndarray
    labels: np.ndarray


def intra_list_diversity(cols: np.ndarray, unit: np.ndarray) -> tuple[float, int]:
    """(sum of the lists' diversity, lists of two or more) of lists of item columns (rows,
    -1 = none) over unit-length item factors: a list's diversity is the mean over its pairs of
    1 - cosine similarity."""
    lengths = (cols >= 0).sum(axis=1)
    vectors = np.where((cols >= 0)[:, :, None], unit[np.maximum(cols, 0)], 0.0)
    gram = vectors @ vectors.transpose(0, 2, 1)
    pairs = lengths * (lengths - 1)
    similar = (gram.sum(axis=(1, 2)) - np.trace(gram, axis1=1, axis2=2))[pairs > 0]
    return float((1.0 - similar / pairs[pairs > 0]).sum()), int((pairs > 0).sum())


def _recommendations(top_ids: np.ndarray, top_scores: np.ndarray, held: tuple[Any, Any],
                     n: int, span: int, exclude_held: bool, start: int) -> tuple[Any, ...]:
    """(row, product, score, rank, kept) of each row's first n ranked products (not held out
    if `exclude_held`); `kept` is the mask of those among the ranked columns."""
    block_held_rows, block_held_ids = held
    keep = top_ids >= 0
    if exclude_held:
        rows = np.arange(len(top_ids), dtype=np.int64)[:, None]
        keep &= ~np.isin(rows * span + top_ids,
                         block_held_rows.astype(np.int64) * span + block_held_ids)
    rank = np.cumsum(keep, axis=1)
    keep &= rank <= n
    row_of = np.broadcast_to(np.arange(start, start + len(top_ids))[:, None], keep.shape)
    return row_of[keep], top_ids[keep], top_scores[keep], rank[keep], keep


def rank_users(users: UserLists, ids: np.ndarray, feats: np.ndarray, k: int, n: int,
               exclude_held: bool, cells_per_block: int = SCORE_CELLS_PER_BLOCK) -> Ranked:
    """Score `users` against the items (`ids` sorted, `feats`), in blocks of users."""
    n_users = len(users.factors)
    bought_rows, bought_cols, _ = lookup(users.bought_lengths, users.bought_ids, ids)
    known_rows, known_cols, known = lookup(users.held_lengths, users.held_ids, ids)
    known_labels = users.labels[known]
    held_rows = np.repeat(np.arange(n_users), users.held_lengths)
    span = int(max(ids.max(initial=0), users.held_ids.max(initial=0))) + 2
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    unit = np.divide(feats, norms, out=np.zeros_like(feats), where=norms > 0)
    out = Ranked()
    block = max(1, cells_per_block // max(1, len(ids)))
    for start in range(0, n_users, block):
        stop = min(n_users, start + block)
        scores = users.factors[start:stop] @ feats.T
        lo, hi = np.searchsorted(known_rows, [start, stop])
        predicted = scores[known_rows[lo:hi] - start, known_cols[lo:hi]].astype(np.float64)
        out.squared_error += float(((predicted - known_labels[lo:hi]) ** 2).sum())
        out.scored += int(hi - lo)
        lo, hi = np.searchsorted(bought_rows, [start, stop])
        scores[bought_rows[lo:hi] - start, bought_cols[lo:hi]] = -np.inf
        # The first n products not held out lie within the first n + (held out) ones.
        held_here = users.held_lengths[start:stop]
        extra = int(held_here.max(initial=0)) if n and exclude_held else 0
        top_cols, top_scores = top_k(scores, max(k, n + extra))
        top_ids = np.where(top_cols >= 0, ids[np.maximum(top_cols, 0)], -1)
        lo, hi = np.searchsorted(held_rows, [start, stop])
        held = (held_rows[lo:hi] - start, users.held_ids[lo:hi])
        listed = top_ids[:, :k]
        out.sums += ranking_sums(listed, held[0], held[1], k)
        evaluated = listed[held_here > 0]
        out.products.append(evaluated[evaluated >= 0])
        if n:
            *recs, kept = _recommendations(top_ids, top_scores, held, n, span, exclude_held,
                                           start)
            out.recs.append(tuple(recs))
            lists = np.full((len(kept), n), -1, dtype=np.int64)
            rows, ranks = np.nonzero(kept)
            lists[rows, recs[3] - 1] = top_cols[rows, ranks]
            diversity, diverse = intra_list_diversity(lists, unit)
            out.diversity += diversity
            out.diverse_users += diverse
    return out


def user_lists(users: Any, rank: int) -> tuple[np.ndarray, UserLists]:
    """(user ids, UserLists) of an Arrow list of (user_idx, features, bought, held) structs."""
    user_idx, user_feat, bought, held = users.flatten()
    held_pairs = held.flatten()
    flat = np.asarray(user_feat.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    lists = UserLists(
        factors=flat.reshape(len(users), rank),
        bought_lengths=list_lengths(bought),
        bought_ids=bought.flatten().to_numpy(zero_copy_only=False).astype(np.int64),
        held_lengths=list_lengths(held),
        held_ids=held_pairs.field(0).to_numpy(zero_copy_only=False).astype(np.int64),
        labels=held_pairs.field(1).to_numpy(zero_copy_only=False).astype(np.float64),
    )
    return user_idx.to_numpy(zero_copy_only=False).astype(np.int32), lists


def baseline_items(popular: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """The popular list (best first) as items for rank_users: ids sorted, score = -rank."""
    order = np.argsort(popular[:depth], kind="stable")
    return popular[:depth][order], -(order + 1).astype(np.float32)[:, None]


# --- Arrow rows out: the SCORED schema of scoring.py ---------------------------------------------
SCORED_NAMES = ("user_idx", "product_idx", "score", "rank", "recommender", "users",
                *RANKING_METRICS, "squared_error", "scored", "products", "diversity",
                "diverse_users")


def partial_row(name: str, users: int, ranked: Ranked) -> pa.RecordBatch:
    """One row of a recommender's partial sums (recommendation columns null)."""
    products = ranked.products
    distinct = np.unique(np.concatenate(products)) if products else np.array([])
    return pa.RecordBatch.from_arrays(
        [pa.nulls(1, pa.int32()), pa.nulls(1, pa.int32()), pa.nulls(1, pa.float32()),
         pa.nulls(1, pa.int32()), pa.array([name], pa.string()), pa.array([users], pa.int64()),
         *[pa.array([float(s)], pa.float64()) for s in ranked.sums],
         pa.array([float(ranked.squared_error)], pa.float64()),
         pa.array([int(ranked.scored)], pa.int64()),
         pa.array([distinct.astype(np.int32)], pa.list_(pa.int32())),
         pa.array([ranked.diversity], pa.float64()), pa.array([ranked.diverse_users], pa.int64())],
        names=list(SCORED_NAMES),
    )


def recs_batch(users: np.ndarray, products: np.ndarray, scores: np.ndarray,
               ranks: np.ndarray) -> pa.RecordBatch:
    """Recommendation rows (partial-sum columns null)."""
    n = len(users)
    return pa.RecordBatch.from_arrays(
        [pa.array(users, pa.int32()), pa.array(products, pa.int32()),
         pa.array(scores, pa.float32()), pa.array(ranks, pa.int32()),
         pa.nulls(n, pa.string()), pa.nulls(n, pa.int64()),
         *[pa.nulls(n, pa.float64()) for _ in RANKING_METRICS], pa.nulls(n, pa.float64()),
         pa.nulls(n, pa.int64()), pa.nulls(n, pa.list_(pa.int32())), pa.nulls(n, pa.float64()),
         pa.nulls(n, pa.int64())],
        names=list(SCORED_NAMES),
    )


def score_chunk(users: Any, items: Any, popular: Any, *, k: int, top_n: int,
                exclude_held: bool) -> Iterator[pa.RecordBatch]:
    """Recommendation rows, then the model's and the baseline's partial sums, of one chunk:
    `users` (user_idx, features, bought, held), `items` (product_idx, features), `popular`
    (product ids, most popular first)."""
    if len(users) == 0:
        return
    ids, feats = item_matrix(items)
    uids, lists = user_lists(users, feats.shape[1])
    evaluated = int((lists.held_lengths > 0).sum())
    model = rank_users(lists, ids, feats, k, top_n, exclude_held)
    for rows, product, score, rank in model.recs:
        yield recs_batch(uids[rows], product, score, rank)
    yield partial_row("model", evaluated, model)
    # A user's first k unbought popular products lie within the first k + (bought) ones.
    ranked = popular.to_numpy(zero_copy_only=False).astype(np.int64)
    depth = min(len(ranked), k + int(lists.bought_lengths.max(initial=0)))
    base_ids, base_feats = baseline_items(ranked, depth)
    ones = replace(lists, factors=np.ones((len(uids), 1), dtype=np.float32))
    yield partial_row("baseline", evaluated, rank_users(ones, base_ids, base_feats, k, 0, False))
