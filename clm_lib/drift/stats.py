"""Statistics shared by the detectors that scipy does not ship: Holm's correction, PSI, an MMD permutation test."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values: rejecting where adjusted p < alpha keeps the family-wise error <= alpha.

    Uniformly more powerful than plain Bonferroni and valid under any dependence between the tests (the length
    features of one text are strongly dependent).
    """
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if m == 0:
        return []
    order = np.argsort(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * p[i])
        adjusted[i] = min(1.0, running)
    return adjusted.tolist()


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    """Population stability index over the reference's quantile bins (0.1: moderate shift, 0.25: major).

    Discrete features (word counts) have tied quantiles; duplicate edges are merged, so a bin is never empty
    by construction. ``eps`` keeps a bin that one side never hits from giving an infinite index.
    """
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    ref = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1) / len(reference)
    cur = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1) / len(current)
    ref, cur = np.clip(ref, eps, None), np.clip(cur, eps, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def mmd_permutation_test(x, y, permutations: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """(MMD², p-value, kernel bandwidth) of an RBF-kernel two-sample test (Gretton et al., 2012).

    ``x`` and ``y`` are (n, d) arrays, dense or scipy-sparse (hashed n-grams stay sparse: only the n x n Gram
    matrix is ever dense). The bandwidth is the median heuristic on the pooled sample, which does not look at
    which side a point came from, so the permutation null stays exact. The kernel matrix is computed once; each
    permutation is a signed weight vector w and its statistic is w^T K w (the biased V-statistic), all
    permutations in one matrix product.
    """
    import scipy.sparse as sp

    z = sp.vstack([x, y]).tocsr() if sp.issparse(x) else np.vstack([x, y]).astype(np.float64)
    gram = z @ z.T
    gram = gram.toarray() if sp.issparse(gram) else gram
    n_x, n = x.shape[0], gram.shape[0]
    sq = np.diag(gram).copy()
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0)
    upper = d2[np.triu_indices(n, k=1)]
    bandwidth = float(np.median(upper[upper > 0])) if np.any(upper > 0) else 1.0
    k = np.exp(-d2 / bandwidth)
    base = np.concatenate([np.full(n_x, 1.0 / n_x), np.full(n - n_x, -1.0 / (n - n_x))])
    w = np.empty((n, permutations + 1))
    w[:, 0] = base
    for b in range(1, permutations + 1):
        w[:, b] = rng.permutation(base)
    stats = np.einsum("ij,ij->j", w, k @ w)
    observed = float(stats[0])
    # The observed labelling counts as one permutation: p is never 0 and the test is exact at level alpha.
    p_value = float((1 + np.sum(stats[1:] >= observed - 1e-12)) / (permutations + 1))
    return observed, p_value, bandwidth
