"""Distributional comparisons of two point clouds: Chamfer distance, MMD, energy distance and Wasserstein-1.

Unlike the Hausdorff distance (one worst point) or the summed distance (grows with ``len(P) * len(Q)``), these treat
each cloud as an empirical distribution with uniform weights and compare the distributions:

* :func:`chamfer` -- sum of the two directed mean nearest-neighbour distances (Fan, Su & Guibas, CVPR 2017).
* :func:`mmd` -- unbiased squared maximum mean discrepancy with an RBF kernel (Gretton et al., JMLR 2012).
* :func:`energy` -- energy distance (Szekely & Rizzo, 2013), the distance form, as :func:`scipy.stats.energy_distance`.
* :func:`wasserstein` -- exact Wasserstein-1 for clouds of equal size, sliced Wasserstein-1 otherwise.

Wasserstein-1 lives in :mod:`experiments.metrics.wasserstein` (re-exported here). All use the Euclidean ground
distance, validate their input with :func:`experiments.metrics.check_clouds` and compute
in float64 with vectorised numpy/scipy. All are symmetric in ``(P, Q)`` and invariant to the order of the points.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.distance import cdist

from experiments.metrics.distances import DEFAULT_BLOCK_SIZE, row_blocks
from experiments.metrics.validation import check_clouds
from experiments.metrics.wasserstein import DEFAULT_N_PROJECTIONS, sliced_wasserstein, wasserstein

__all__ = [
    "DEFAULT_N_PROJECTIONS",
    "chamfer",
    "energy",
    "median_heuristic",
    "mmd",
    "sliced_wasserstein",
    "wasserstein",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- Chamfer


def chamfer(P: ArrayLike, Q: ArrayLike, *, block_size: int = DEFAULT_BLOCK_SIZE) -> float:
    r"""Chamfer distance: the sum of the two directed mean nearest-neighbour distances (non-squared, Euclidean).

    .. math::

        d_{CD}(P, Q) = \frac{1}{|P|} \sum_{p \in P} \min_{q \in Q} \lVert p - q \rVert_2
                     + \frac{1}{|Q|} \sum_{q \in Q} \min_{p \in P} \lVert p - q \rVert_2

    The *sum* of the two directed means (not their average) of *plain* (not squared) Euclidean distances; the
    point-cloud literature also uses squared distances (Fan, Su & Guibas, "A Point Set Generation Network for 3D
    Object Reconstruction from a Single Image", CVPR 2017, https://arxiv.org/abs/1612.00603, eq. 1) -- this one is
    in the units of the embedding. It is the mean-instead-of-max relative of the Hausdorff distance:
    ``chamfer(P, Q) <= 2 * hausdorff(P, Q)``. Exact: every pairwise distance is evaluated, in row blocks of ``P``
    (a k-d tree does not beat brute force in embedding dimensions such as 64).

    Parameters
    ----------
    P : array-like of shape (n, d)
        First point cloud.
    Q : array-like of shape (m, d)
        Second point cloud.
    block_size : int, default 2**22
        Maximum number of pairwise distances held in memory at once (at least one row of ``m`` distances).

    Returns
    -------
    float
        The Chamfer distance, ``>= 0``; ``0.0`` iff the two clouds contain the same set of points. Symmetric.

    Raises
    ------
    ValueError
        On invalid clouds (see :func:`experiments.metrics.check_clouds`) or a non-positive ``block_size``.
    """
    P, Q = check_clouds(P, Q)
    n, m = P.shape[0], Q.shape[0]
    starts = row_blocks(n, m, block_size)
    step = starts.step
    forward = 0.0  # sum over p of min over q
    backward = np.full(m, np.inf)  # for each q, min over p seen so far
    for start in starts:
        block = cdist(P[start : start + step], Q)
        forward += float(block.min(axis=1).sum())
        np.minimum(backward, block.min(axis=0), out=backward)
    result = forward / n + float(backward.mean())
    logger.debug("chamfer: |P|=%d, |Q|=%d, d=%d -> %g", n, m, P.shape[1], result)
    return result


# --------------------------------------------------------------------------------------------- MMD


def _check_min_points(P: np.ndarray, Q: np.ndarray, minimum: int, what: str) -> None:
    for name, cloud in (("P", P), ("Q", Q)):
        if cloud.shape[0] < minimum:
            raise ValueError(
                f"{what} needs at least {minimum} points per cloud; {name} has {cloud.shape[0]} (shape {cloud.shape})"
            )


def _squared_distance_blocks(P: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Squared Euclidean distance matrices ``(P-P, Q-Q, P-Q)``, each from :func:`cdist` (``sqeuclidean``)."""
    return cdist(P, P, "sqeuclidean"), cdist(Q, Q, "sqeuclidean"), cdist(P, Q, "sqeuclidean")


def _median_from_squared(d_pp: np.ndarray, d_qq: np.ndarray, d_pq: np.ndarray) -> float:
    """Median heuristic from the three squared-distance blocks; see :func:`median_heuristic`."""
    iu_p = np.triu_indices(d_pp.shape[0], k=1)
    iu_q = np.triu_indices(d_qq.shape[0], k=1)
    pooled = np.sqrt(np.concatenate([d_pp[iu_p], d_qq[iu_q], d_pq.ravel()]))
    sigma = float(np.median(pooled))
    if sigma > 0.0:
        return sigma
    positive = pooled[pooled > 0.0]
    if positive.size:
        logger.debug("median heuristic: over half the pooled distances are 0; using the median of the positive ones")
        return float(np.median(positive))
    logger.debug("median heuristic: all pooled points coincide; bandwidth 1 (every kernel value is 1 anyway)")
    return 1.0


def median_heuristic(P: ArrayLike, Q: ArrayLike) -> float:
    r"""RBF bandwidth by the median heuristic: the median pairwise Euclidean distance of the pooled sample.

    .. math::

        \sigma = \operatorname{median}\{\lVert z_i - z_j \rVert_2 : i < j\}, \qquad Z = P \cup Q \text{ (stacked)},

    i.e. ``np.median(scipy.spatial.distance.pdist(np.vstack([P, Q])))`` -- every unordered pair of distinct *rows*
    once, the zero self-distances ``i == j`` excluded (Gretton et al., JMLR 2012, sec. 8; Garreau, Jitkrittum &
    Kanagawa, "Large sample analysis of the median heuristic", 2017, https://arxiv.org/abs/1707.07269).

    Degenerate cases, so that the kernel is always defined: if that median is 0 (more than half of the pairs are
    duplicate points, which resampling with replacement can produce) the median of the *positive* distances is
    used; if every pooled point coincides, ``1.0`` (then every kernel value is 1 whatever the bandwidth).

    Parameters
    ----------
    P : array-like of shape (n, d)
        First point cloud.
    Q : array-like of shape (m, d)
        Second point cloud.

    Returns
    -------
    float
        The bandwidth ``sigma > 0`` that :func:`mmd` uses when ``bandwidth`` is not given.

    Raises
    ------
    ValueError
        On invalid clouds (see :func:`experiments.metrics.check_clouds`).
    """
    P, Q = check_clouds(P, Q)
    return _median_from_squared(*_squared_distance_blocks(P, Q))


def check_bandwidth(bandwidth: float) -> float:
    """``bandwidth`` as a float when it is a positive finite number whose ``2 * bandwidth**2`` is finite and
    non-zero in float64; ``ValueError`` otherwise."""
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float, np.integer, np.floating)):
        raise ValueError(f"bandwidth must be a positive finite number or None; got {bandwidth!r}")
    sigma = float(bandwidth)
    if not np.isfinite(sigma) or sigma <= 0.0:
        raise ValueError(f"bandwidth must be a positive finite number or None; got {bandwidth!r}")
    two_sigma_sq = 2.0 * sigma * sigma
    if two_sigma_sq == 0.0 or not np.isfinite(two_sigma_sq):
        raise ValueError(f"bandwidth {bandwidth!r} is out of range: 2 * bandwidth**2 = {two_sigma_sq} in float64")
    return sigma


def mmd(P: ArrayLike, Q: ArrayLike, *, bandwidth: float | None = None) -> float:
    r"""Unbiased squared maximum mean discrepancy with a Gaussian (RBF) kernel.

    Gretton, Borgwardt, Rasch, Schoelkopf & Smola, "A Kernel Two-Sample Test", JMLR 13 (2012), eq. (3),
    https://jmlr.org/papers/v13/gretton12a.html:

    .. math::

        \mathrm{MMD}^2_u(P, Q) = \frac{1}{n(n-1)} \sum_{i \ne j} k(p_i, p_j)
                               + \frac{1}{m(m-1)} \sum_{i \ne j} k(q_i, q_j)
                               - \frac{2}{nm} \sum_{i, j} k(p_i, q_j),
        \qquad k(x, y) = \exp\!\Big(-\frac{\lVert x - y \rVert_2^2}{2\sigma^2}\Big),

    with ``sigma = bandwidth``, or :func:`median_heuristic` ``(P, Q)`` when ``bandwidth`` is None (then the
    statistic is invariant to a common rescaling of both clouds).

    **Can be negative.** The estimator is unbiased, not non-negative: it scatters around the population
    ``MMD^2 >= 0`` and is slightly negative when the clouds come from the same distribution. In particular
    ``mmd(P, P) = -(2/n) * (1 - mean_{i != j} k(p_i, p_j)) <= 0``, with equality only when all points of ``P``
    coincide. Compare values, do not take square roots.

    Costs ``O((n + m)^2 d)`` time and holds the three kernel matrices, ``O((n + m)^2)`` memory.

    Parameters
    ----------
    P : array-like of shape (n, d)
        First point cloud, ``n >= 2``.
    Q : array-like of shape (m, d)
        Second point cloud, ``m >= 2``.
    bandwidth : float, optional
        Kernel width ``sigma > 0``; by default the median heuristic of the pooled sample.

    Returns
    -------
    float
        The unbiased ``MMD^2_u`` estimate (squared units of nothing: kernel values are in ``[0, 1]``, so the result
        lies in ``[-2, 2]``). Symmetric in ``(P, Q)``.

    Raises
    ------
    ValueError
        On invalid clouds (see :func:`experiments.metrics.check_clouds`), a cloud with fewer than 2 points (the
        within-cloud means over ``i != j`` are undefined; too small a cloud is reported, never padded), or a
        bandwidth that is not a positive finite number.
    """
    P, Q = check_clouds(P, Q)
    _check_min_points(P, Q, 2, "mmd (the unbiased estimator)")
    d_pp, d_qq, d_pq = _squared_distance_blocks(P, Q)
    sigma = _median_from_squared(d_pp, d_qq, d_pq) if bandwidth is None else check_bandwidth(bandwidth)
    two_sigma_sq = 2.0 * sigma * sigma
    n, m = P.shape[0], Q.shape[0]
    # The diagonals of d_pp and d_qq are exactly 0, so their kernel values are exactly 1: subtract n (resp. m).
    k_pp = (float(np.exp(-(d_pp / two_sigma_sq)).sum()) - n) / (n * (n - 1))
    k_qq = (float(np.exp(-(d_qq / two_sigma_sq)).sum()) - m) / (m * (m - 1))
    k_pq = float(np.exp(-(d_pq / two_sigma_sq)).mean())
    result = k_pp + k_qq - 2.0 * k_pq
    logger.debug("mmd: |P|=%d, |Q|=%d, d=%d, sigma=%g -> %g", n, m, P.shape[1], sigma, result)
    return result


# --------------------------------------------------------------------------------------------- energy distance


def _mean_distance(A: np.ndarray, B: np.ndarray, block_size: int) -> float:
    """Mean of all ``len(A) * len(B)`` Euclidean distances, in row blocks of ``A``, float64 accumulation."""
    starts = row_blocks(A.shape[0], B.shape[0], block_size)
    step = starts.step
    total = 0.0
    for start in starts:
        total += float(cdist(A[start : start + step], B).sum(dtype=np.float64))
    return total / (A.shape[0] * B.shape[0])


def energy(P: ArrayLike, Q: ArrayLike, *, block_size: int = DEFAULT_BLOCK_SIZE) -> float:
    r"""Energy distance between the empirical distributions of two clouds (the distance, not its square).

    Szekely & Rizzo, "Energy statistics: A class of statistics based on distances", J. Stat. Planning and
    Inference 143 (2013), https://doi.org/10.1016/j.jspi.2013.03.018, eq. (2.1)-(2.2):

    .. math::

        \mathcal{E}(P, Q) = \sqrt{\,2\,\frac{1}{nm}\sum_{i,j} \lVert p_i - q_j \rVert_2
                                   - \frac{1}{n^2}\sum_{i,j} \lVert p_i - p_j \rVert_2
                                   - \frac{1}{m^2}\sum_{i,j} \lVert q_i - q_j \rVert_2\,}

    -- the V-statistic means over *all* pairs, the zero ``i == j`` terms included, so the quantity under the root is
    the (non-negative) squared energy distance of the two empirical measures. We return its square root, as
    :func:`scipy.stats.energy_distance` does (for 1-D clouds the two agree: ``energy(P[:, None], Q[:, None]) ==
    scipy.stats.energy_distance(P, Q)``). A negative round-off residue under the root (only possible when the
    two distributions are equal, e.g. ``Q`` a permutation of ``P``) is clamped to 0.

    ``0`` iff the two clouds define the same empirical distribution (``P`` and ``P`` stacked twice: 0); symmetric;
    a metric on distributions. Exact, in row blocks of at most ``block_size`` distances.

    Parameters
    ----------
    P : array-like of shape (n, d)
        First point cloud.
    Q : array-like of shape (m, d)
        Second point cloud.
    block_size : int, default 2**22
        Maximum number of pairwise distances held in memory at once (at least one row).

    Returns
    -------
    float
        The energy distance, ``>= 0``, in the units of the embedding.

    Raises
    ------
    ValueError
        On invalid clouds (see :func:`experiments.metrics.check_clouds`) or a non-positive ``block_size``.
    """
    P, Q = check_clouds(P, Q)
    cross = _mean_distance(P, Q, block_size)
    squared = 2.0 * cross - _mean_distance(P, P, block_size) - _mean_distance(Q, Q, block_size)
    result = float(np.sqrt(max(squared, 0.0)))
    logger.debug("energy: |P|=%d, |Q|=%d, d=%d, squared %g -> %g", len(P), len(Q), P.shape[1], squared, result)
    return result
