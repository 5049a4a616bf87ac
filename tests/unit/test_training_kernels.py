"""The scorer's numpy core, without Spark: top-k against a full sort, ranking metrics against
hand-computed values, exact exclusion of bought and held-out products."""

from __future__ import annotations

import numpy as np
import pytest

from spark_app.training.kernels import (
    TOP_K_GROUPS,
    UserLists,
    baseline_items,
    intra_list_diversity,
    rank_users,
    ranking_sums,
    top_k,
)


def test_ranking_sums_equal_hand_computed_values() -> None:
    # k = 3. Per user (predicted best first | held out):
    # 0: [1, 2, 3] | {1, 3}: P 2/3, R 1, AP (1/1 + 2/3) / 2 = 0.83333,
    #    NDCG (1 + 1/log2 4) / (1 + 1/log2 3) = 1.5 / 1.63093 = 0.91972
    # 1: [4, 5, 6] | {7}: all 0
    # 2: [8, 9, 10] | {10, 11, 12, 13}: P 1/3, R 1/4, AP (1/3) / min(4, 3) = 0.11111,
    #    NDCG 0.5 / (1 + 0.63093 + 0.5) = 0.23464
    # 3: [14] | {14}: P 1/3 (divided by k), R 1, AP 1, NDCG 1
    # 4: no recommendation | {15}: all 0
    top = np.array([[1, 2, 3], [4, 5, 6], [8, 9, 10], [14, -1, -1], [-1, -1, -1]])
    held_rows = np.array([0, 0, 1, 2, 2, 2, 2, 3, 4])
    held_ids = np.array([1, 3, 7, 10, 11, 12, 13, 14, 15])
    expected = [2 / 3 + 1 / 3 + 1 / 3, 1 + 0.25 + 1, 0.919721 + 0.234639 + 1,
                0.833333 + 0.111111 + 1]
    assert ranking_sums(top, held_rows, held_ids, 3).tolist() == pytest.approx(expected, abs=1e-5)


def test_top_k_kernel_equals_a_full_sort_with_ties_and_masked_scores() -> None:
    # Wide enough for the grouped bound (TOP_K_GROUPS column groups), with ties (scores rounded
    # to a coarse grid) and rows with fewer than k scores left (the rest masked as -inf).
    rng = np.random.default_rng(5)
    n_rows, n_cols, k = 60, TOP_K_GROUPS * 3 + 7, 12
    scores = np.round(rng.standard_normal((n_rows, n_cols)), 1).astype(np.float32)
    scores[rng.random(scores.shape) < 0.3] = -np.inf
    scores[0, 5:] = -np.inf  # 5 scores left
    scores[1, :] = 2.0  # all tied
    expected_cols = np.full((n_rows, k), -1)
    for row in range(n_rows):
        finite = np.flatnonzero(np.isfinite(scores[row]))
        ordered = finite[np.lexsort((finite, -scores[row, finite]))][:k]
        expected_cols[row, : len(ordered)] = ordered
    top_cols, top_scores = top_k(scores.copy(), k)
    expected_scores = np.where(
        expected_cols >= 0, scores[np.arange(n_rows)[:, None], expected_cols], -np.inf
    )
    assert (top_cols.tolist(), top_scores.tolist()) == (
        expected_cols.tolist(),
        expected_scores.tolist(),
    )


@pytest.mark.parametrize(("n_cols", "k"), [(600, 5), (1000, 20), (300, 3), (40, 10)])
def test_top_k_equals_a_full_sort(n_cols: int, k: int) -> None:
    # Ties (equal columns), bought products (-inf) and a row with fewer than k finite scores.
    rng = np.random.default_rng(n_cols + k)
    scores = rng.standard_normal((50, n_cols)).astype(np.float32)
    scores[:, 7] = scores[:, 3]
    scores[rng.integers(0, 50, 400), rng.integers(0, n_cols, 400)] = -np.inf
    scores[0, 2:] = -np.inf
    cols, vals = top_k(scores, k)
    for row in range(len(scores)):
        order = [
            c for c in np.lexsort((np.arange(n_cols), -scores[row])) if scores[row, c] > -np.inf
        ]
        expected = order[:k] + [-1] * (k - len(order[:k]))
        assert cols[row].tolist() == expected
        assert vals[row].tolist() == [scores[row, c] if c >= 0 else -np.inf for c in expected]


def _users(factors: list[list[float]], bought: list[list[int]],
           held: list[list[int]]) -> UserLists:
    flat_held = [p for h in held for p in h]
    return UserLists(
        factors=np.array(factors, dtype=np.float32),
        bought_lengths=np.array([len(b) for b in bought]),
        bought_ids=np.array([p for b in bought for p in b], dtype=np.int64),
        held_lengths=np.array([len(h) for h in held]),
        held_ids=np.array(flat_held, dtype=np.int64),
        labels=np.ones(len(flat_held)),
    )


def test_recommendations_leave_out_what_was_bought_and_held_out() -> None:
    # Items 10..13 with scores for user 0: 3, 2, 0, 1; for user 1: 0, 0, 5, 1.5.
    ids = np.array([10, 11, 12, 13])
    feats = np.array([[3.0, 0.0], [2.0, 0.0], [0.0, 5.0], [1.0, 1.5]], dtype=np.float32)
    users = _users([[1.0, 0.0], [0.0, 1.0]], bought=[[10], []], held=[[11], [12]])
    ranked = rank_users(users, ids, feats, k=2, n=2, exclude_held=True)
    rows, products, scores, ranks = (np.concatenate(p) for p in zip(*ranked.recs, strict=True))
    got = sorted(zip(rows.tolist(), products.tolist(), scores.tolist(), ranks.tolist(),
                     strict=True))
    assert got == [(0, 12, 0.0, 2), (0, 13, 1.0, 1), (1, 10, 0.0, 2), (1, 13, 1.5, 1)]


def test_the_baseline_ranks_by_popularity_without_what_was_bought() -> None:
    # Popular list, best first: 30, 20, 10, 40. The user bought 30 and held out 10.
    ids, feats = baseline_items(np.array([30, 20, 10, 40]), depth=4)
    users = _users([[1.0]], bought=[[30]], held=[[10]])
    ranked = rank_users(users, ids, feats, k=2, n=2, exclude_held=False)
    (rows, products, _, ranks), = ranked.recs
    assert (products.tolist(), ranks.tolist(), ranked.sums[0]) == ([20, 10], [1, 2], 0.5)


def test_intra_list_diversity_is_the_mean_pairwise_cosine_distance() -> None:
    # Items: 0 and 1 orthogonal, 2 the same direction as 0. List [0, 1]: distance 1;
    # list [0, 2]: 0; list [0, 1, 2]: (1 + 0 + 1) / 3; a list of one is not counted.
    unit = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    lists = np.array([[0, 1, -1], [0, 2, -1], [0, 1, 2], [1, -1, -1]])
    total, lists_counted = intra_list_diversity(lists, unit)
    assert (total, lists_counted) == (pytest.approx(1 + 0 + 2 / 3), 3)
