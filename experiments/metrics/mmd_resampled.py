r"""Unbiased MMD² on bootstrap resamples drawn with replacement: coincident indices are left out of the U-statistic.

A bootstrap resample ``P = A[i_1..i_s]`` drawn *with replacement* from a cloud ``A`` repeats points. The unbiased
estimator :func:`experiments.metrics.mmd` removes the diagonal ``i == j`` of each within-cloud kernel sum, but a
repeated point also sits off the diagonal (``i != j``, ``i_a == i_b``), where it adds ``k(a, a) = 1``. The
within-cloud means are then too large by about ``(1 - mean k) / N`` for a cloud of ``N`` points -- a positive bias
that grows as the cloud gets smaller, so it differs between classes with different test-set sizes.

Here the within-cloud sums run over the pairs of *different source indices* only:

.. math::

    \widehat{\mathrm{MMD}}^2 = \frac{\sum_{a \ne b,\ i_a \ne i_b} k(p_a, p_b)}{\#\{a \ne b : i_a \ne i_b\}}
                             + \frac{\sum_{a \ne b,\ j_a \ne j_b} k(q_a, q_b)}{\#\{a \ne b : j_a \ne j_b\}}
                             - \frac{2}{s_P s_Q} \sum_{a, b} k(p_a, q_b),

(``q_b = B[j_b]``). Given which positions of a resample share an index, the shared indices are a uniformly random
set of distinct points of ``A``, so every kept pair is a uniformly random pair of *distinct* points of ``A``: for a
fixed kernel the expectation over resamples is exactly :func:`experiments.metrics.mmd` of the whole clouds
``(A, B)`` -- Gretton et al.'s unbiased ``MMD^2_u`` (JMLR 2012, eq. 3) -- whatever ``N`` is. Cross pairs are
independent draws and are all kept. Without repeated indices this equals :func:`experiments.metrics.mmd` of the
resampled points. The median-heuristic bandwidth (``bandwidth=None``) is the median over the same kept within-cloud
pairs and all cross pairs, so repeated points do not shrink it either.

This is the form the bootstrap uses for ``mmd`` (via :func:`experiments.metrics.batched.score_resamples`); the other
metrics keep the same resample indices, so all metrics of a sweep still share their draws.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.distance import cdist

from experiments.metrics.distributional import check_bandwidth
from experiments.metrics.validation import check_clouds

__all__ = ["mmd_resampled", "mmd_resamples"]


def _kept_median(pooled: np.ndarray) -> float:
    """Median of the pooled distances; the median of the positive ones when that is 0; 1 when all are 0."""
    sigma = float(np.median(pooled))
    if sigma > 0.0:
        return sigma
    positive = pooled[pooled > 0.0]
    return float(np.median(positive)) if positive.size else 1.0


def mmd_resampled(
    A: ArrayLike, B: ArrayLike, ref_idx: ArrayLike, eval_idx: ArrayLike, *, bandwidth: float | None = None
) -> float:
    """The MMD² of the module docstring for one resample ``(A[ref_idx], B[eval_idx])``.

    Raises:
        ValueError: invalid clouds, indices out of range, or a resample without two different indices (no
            within-cloud pair to average).
    """
    A, B = check_clouds(A, B)
    ip, iq = np.asarray(ref_idx, dtype=np.int64).ravel(), np.asarray(eval_idx, dtype=np.int64).ravel()
    for name, idx, n in (("ref_idx", ip, len(A)), ("eval_idx", iq, len(B))):
        if idx.size < 2 or idx.min() < 0 or idx.max() >= n:
            raise ValueError(f"mmd_resampled: {name} needs >= 2 indices in [0, {n}), got {idx.size} of them")
    P, Q = A[ip], B[iq]
    d_pp, d_qq, d_pq = cdist(P, P, "sqeuclidean"), cdist(Q, Q, "sqeuclidean"), cdist(P, Q, "sqeuclidean")
    keep_p, keep_q = ip[:, None] != ip[None, :], iq[:, None] != iq[None, :]
    if not keep_p.any() or not keep_q.any():
        raise ValueError("mmd_resampled: a resample repeats one point only; no within-cloud pair to average")
    if bandwidth is None:
        upper_p, upper_q = np.triu(keep_p, 1), np.triu(keep_q, 1)
        sigma = _kept_median(np.sqrt(np.concatenate([d_pp[upper_p], d_qq[upper_q], d_pq.ravel()])))
    else:
        sigma = check_bandwidth(bandwidth)
    two_sigma_sq = 2.0 * sigma * sigma
    k_pp = float(np.exp(-(d_pp[keep_p] / two_sigma_sq)).mean())
    k_qq = float(np.exp(-(d_qq[keep_q] / two_sigma_sq)).mean())
    k_pq = float(np.exp(-(d_pq / two_sigma_sq)).mean())
    return k_pp + k_qq - 2.0 * k_pq


def mmd_resamples(
    A: ArrayLike, B: ArrayLike, ref_idx: ArrayLike, eval_idx: ArrayLike, *, bandwidth: float | None = None
) -> np.ndarray:
    """:func:`mmd_resampled` of every resample ``r``: ``ref_idx`` ``(R, s_P)``, ``eval_idx`` ``(R, s_Q)``."""
    A, B = check_clouds(A, B)
    ri, ei = np.atleast_2d(ref_idx), np.atleast_2d(eval_idx)
    if len(ri) != len(ei):
        raise ValueError(f"mmd_resamples: {len(ri)} reference and {len(ei)} evaluated resamples")
    return np.array([mmd_resampled(A, B, a, b, bandwidth=bandwidth) for a, b in zip(ri, ei, strict=True)])
