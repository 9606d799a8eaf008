r"""Wasserstein-1 between two point clouds: exact for clouds of equal size (an optimal assignment), sliced otherwise.

Split from :mod:`experiments.metrics.distributional` (which re-exports :func:`wasserstein` and
:func:`sliced_wasserstein`); the Euclidean ground distance, uniform weights, float64.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from experiments.metrics.validation import check_clouds

__all__ = ["DEFAULT_N_PROJECTIONS", "random_directions", "sliced_wasserstein", "wasserstein"]

logger = logging.getLogger(__name__)

#: Number of random directions of the sliced Wasserstein estimate.
DEFAULT_N_PROJECTIONS: int = 200

SeedLike = int | np.random.Generator


def _check_projection_args(n_projections: int, seed: SeedLike) -> None:
    if isinstance(n_projections, bool) or not isinstance(n_projections, (int, np.integer)) or n_projections < 1:
        raise ValueError(f"n_projections must be a positive integer; got {n_projections!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer, np.random.Generator)):
        raise ValueError(f"seed must be an integer or a numpy Generator; got {seed!r}")


def random_directions(n_projections: int, n_dims: int, seed: SeedLike) -> np.ndarray:
    """``n_projections`` unit vectors drawn uniformly on the sphere ``S^{d-1}`` (normalised Gaussians), ``(L, d)``."""
    _check_projection_args(n_projections, seed)
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((int(n_projections), n_dims))
    norms = np.linalg.norm(directions, axis=1, keepdims=True)
    while not (norms > 0).all():  # probability 0 in floating point, but never divide by zero
        bad = (norms <= 0).ravel()
        directions[bad] = rng.standard_normal((int(bad.sum()), n_dims))
        norms = np.linalg.norm(directions, axis=1, keepdims=True)
    return directions / norms


def _wasserstein_1d_columns(U: np.ndarray, V: np.ndarray) -> np.ndarray:
    r"""W1 between the empirical distributions of each column of ``U`` (n, L) and of ``V`` (m, L), uniform weights.

    .. math::  W_1(\mu, \nu) = \int_0^1 \lvert F_\mu^{-1}(t) - F_\nu^{-1}(t) \rvert \, dt

    Both quantile functions are step functions that jump only at ``t = i/n`` and ``t = j/m``, so the integral is an
    exact finite sum over the merged breakpoints, done for all ``L`` columns at once. Breakpoints are kept as
    integers in units of ``1/(n m)`` so that shared ones (``i/n == j/m``) merge exactly. Equal to
    :func:`scipy.stats.wasserstein_distance` column by column (which integrates ``|F - G|`` instead).
    """
    n, m = U.shape[0], V.shape[0]
    u_sorted = np.sort(U, axis=0)
    v_sorted = np.sort(V, axis=0)
    ticks = np.union1d(np.arange(1, n + 1, dtype=np.int64) * m, np.arange(1, m + 1, dtype=np.int64) * n)
    widths = np.diff(ticks, prepend=0) / (n * m)  # interval (t_{k-1}, t_k]
    idx_u = (ticks + m - 1) // m - 1  # F_U^{-1}(t) = u_(ceil(t n)) on (t_{k-1}, t_k]
    idx_v = (ticks + n - 1) // n - 1
    return widths @ np.abs(u_sorted[idx_u] - v_sorted[idx_v])


def sliced_wasserstein(
    P: ArrayLike, Q: ArrayLike, *, n_projections: int = DEFAULT_N_PROJECTIONS, seed: SeedLike = 0
) -> float:
    r"""Sliced Wasserstein-1 distance, Monte-Carlo estimate over random directions (any cloud sizes).

    .. math::

        SW_1(P, Q) \approx \frac{1}{L} \sum_{l=1}^{L} W_1\big(\langle P, \theta_l \rangle, \langle Q, \theta_l
        \rangle\big), \qquad \theta_l \sim \mathrm{Uniform}(S^{d-1}),

    with ``L = n_projections`` directions from ``numpy.random.default_rng(seed)`` (normalised standard Gaussians,
    so the same ``seed`` and ``d`` give the same directions for every pair of clouds) and the 1-D ``W_1`` of the
    projected empirical distributions, exactly :func:`scipy.stats.wasserstein_distance` (computed here for all
    directions at once). Rabin, Peyre, Delon & Bernot, "Wasserstein Barycenter and its Application to Texture
    Mixing", SSVM 2011; Bonneel, Rabin, Peyre & Pfister, "Sliced and Radon Wasserstein Barycenters of Measures",
    J. Math. Imaging Vis. 51 (2015).

    ``SW_1 <= W_1`` (each projection is 1-Lipschitz), so this is *not* an estimate of the exact ``W_1``. For
    ``d = 1`` every direction is ``+-1`` and the estimate equals the exact ``W_1``.

    Parameters
    ----------
    P : array-like of shape (n, d)
        First point cloud.
    Q : array-like of shape (m, d)
        Second point cloud.
    n_projections : int, default 200
        Number of random directions ``L``; the Monte-Carlo error shrinks as ``1/sqrt(L)``.
    seed : int or numpy.random.Generator, default 0
        Seed of the directions. An ``int`` makes the value reproducible; a ``Generator`` is advanced.

    Returns
    -------
    float
        The estimate, ``>= 0``; ``0`` when the clouds define the same empirical distribution. Symmetric.

    Raises
    ------
    ValueError
        On invalid clouds (see :func:`experiments.metrics.check_clouds`), a non-positive ``n_projections`` or a
        ``seed`` that is neither an integer nor a Generator.
    """
    P, Q = check_clouds(P, Q)
    directions = random_directions(n_projections, P.shape[1], seed)
    per_direction = _wasserstein_1d_columns(P @ directions.T, Q @ directions.T)
    return float(per_direction.mean())


def wasserstein(P: ArrayLike, Q: ArrayLike, *, n_projections: int = DEFAULT_N_PROJECTIONS, seed: SeedLike = 0) -> float:
    r"""Wasserstein-1 (earth mover's) distance between two clouds with uniform weights, Euclidean ground cost.

    Two branches, which estimate **different quantities** -- never compare values across them:

    * ``len(P) == len(Q) == n``: the **exact** ``W_1``. With equal uniform weights an optimal transport plan is a
      permutation (Birkhoff-von Neumann), so

      .. math::  W_1(P, Q) = \min_{\pi \in S_n} \frac{1}{n} \sum_{i=1}^{n} \lVert p_i - q_{\pi(i)} \rVert_2,

      solved exactly with :func:`scipy.optimize.linear_sum_assignment` on ``cdist(P, Q)`` (``O(n^3)``;
      Villani, "Optimal Transport: Old and New", 2009, ch. 6). ``n_projections`` and ``seed`` are not used.
    * ``len(P) != len(Q)``: the **sliced** ``W_1``, :func:`sliced_wasserstein` -- the mean over ``n_projections``
      random unit directions (seeded ``numpy.random.default_rng(seed)``) of
      :func:`scipy.stats.wasserstein_distance` of the 1-D projections. A lower bound of the exact ``W_1``
      (equal to it for ``d = 1``) and a Monte-Carlo estimate, reproducible for a fixed ``seed``.

    In a bootstrap with a fixed sample size both clouds have the same size, so the exact branch is used.

    Parameters
    ----------
    P : array-like of shape (n, d)
        First point cloud.
    Q : array-like of shape (m, d)
        Second point cloud.
    n_projections : int, default 200
        Number of random directions of the sliced branch.
    seed : int or numpy.random.Generator, default 0
        Seed of the sliced branch's directions.

    Returns
    -------
    float
        ``W_1`` (equal sizes) or the sliced ``W_1`` estimate (unequal sizes), ``>= 0``, in the units of the
        embedding. Symmetric.

    Raises
    ------
    ValueError
        On invalid clouds (see :func:`experiments.metrics.check_clouds`), a non-positive ``n_projections`` or a
        ``seed`` that is neither an integer nor a Generator (checked in both branches).
    """
    P, Q = check_clouds(P, Q)
    _check_projection_args(n_projections, seed)  # in both branches: a bad argument fails on the first call
    if P.shape[0] != Q.shape[0]:
        result = sliced_wasserstein(P, Q, n_projections=n_projections, seed=seed)
        logger.debug("wasserstein (sliced, L=%d): |P|=%d, |Q|=%d -> %g", n_projections, len(P), len(Q), result)
        return result
    cost = cdist(P, Q)
    rows, cols = linear_sum_assignment(cost)
    result = float(cost[rows, cols].mean())
    logger.debug("wasserstein (exact): |P|=|Q|=%d, d=%d -> %g", len(P), P.shape[1], result)
    return result
