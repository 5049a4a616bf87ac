"""The numbers behind an answer: fold-in of a user vector, top-n with exclusion, cosine.

Pure numpy over plain arrays. The fold-in is the user step of implicit ALS (Hu, Koren and
Volinsky, "Collaborative Filtering for Implicit Feedback Datasets", 2008) as Spark MLlib
computes it, so that a user the model trained on gets back the model's own vector:

    x_u = (YᵀY + Σᵢ αrᵢ yᵢyᵢᵀ + λ·n_u·I)⁻¹ Σᵢ (1 + αrᵢ) yᵢ      over the products i the user bought

with Y the item factors, rᵢ the units bought (the rating), α = als.alpha, λ = als.reg_param and
n_u the number of products bought (Spark weights λ by it, as in ALS-WR). In explicit mode:
x_u = (Σᵢ yᵢyᵢᵀ + λ·n_u·I)⁻¹ Σᵢ rᵢ yᵢ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# top_n: column groups whose maxima bound the n-th best score (see top_n).
GROUPS = 128


@dataclass(frozen=True)
class FoldInParams:
    """The model's parameters the fold-in needs (manifest.parameters.als)."""

    implicit: bool
    alpha: float
    reg_param: float


def gram(items: np.ndarray) -> np.ndarray:
    """YᵀY of the item factors (rank x rank, float64): the implicit fold-in's common term."""
    y = items.astype(np.float64)
    return y.T @ y


def fold_in(
    items: np.ndarray,
    yty: np.ndarray,
    rows: np.ndarray,
    ratings: np.ndarray,
    params: FoldInParams,
) -> np.ndarray | None:
    """A user vector (float32) from the products bought (`rows` of `items`) and the units of
    each (`ratings`, one per row, already summed per product); None if nothing was bought."""
    positive = ratings > 0
    n_u = int(np.count_nonzero(positive)) if params.implicit else len(rows)
    if n_u == 0:
        return None
    y = items[rows].astype(np.float64)
    r = ratings.astype(np.float64)
    rank = items.shape[1]
    if params.implicit:
        c1 = params.alpha * np.abs(r)
        a = yty + (y.T * c1) @ y
        b = y.T @ np.where(positive, 1.0 + c1, 0.0)
    else:
        a = y.T @ y
        b = y.T @ r
    a[np.diag_indices(rank)] += params.reg_param * n_u
    return np.linalg.solve(a, b).astype(np.float32)


def top_n(scores: np.ndarray, n: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the n best finite scores, best first (ties: lower index first), leaving out
    the indices in `exclude`. `scores` is overwritten where excluded.

    Only the candidates are sorted: the n-th best of the maxima of GROUPS disjoint column
    groups is a lower bound of the n-th best score (n distinct columns reach it), so every
    score that can be in the answer is at least that bound.
    """
    if exclude is not None and len(exclude):
        scores[exclude] = -np.inf
    size = len(scores)
    n = min(n, size)
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    width = size // GROUPS
    if n < GROUPS and width >= 2:
        maxima = scores[: width * GROUPS].reshape(width, GROUPS).max(axis=0)
        bound = np.sort(maxima)[GROUPS - n]
        candidates = (scores >= bound).nonzero()[0]
    else:
        candidates = np.arange(size)
    # Candidates are in index order: a stable sort keeps the lower index first among ties.
    best = candidates[np.argsort(-scores[candidates], kind="stable")[:n]]
    if len(best) and scores[best[-1]] == -np.inf:  # fewer than n left after the exclusion
        best = best[np.isfinite(scores[best])]
    return best


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (float32; all-zero rows stay zero): cosine by dot product."""
    norms = np.linalg.norm(matrix.astype(np.float64), axis=1)
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return (matrix * scale[:, None]).astype(np.float32)
