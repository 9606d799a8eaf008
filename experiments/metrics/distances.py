"""Distance-based comparisons of two point clouds: Hausdorff distance and summed point-to-point distance.

Both are computed exactly, in blocks of rows of ``P`` so that at most ``block_size`` pairwise distances are held in
memory at once, with :func:`scipy.spatial.distance.cdist` on each block and float64 accumulation.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.distance import cdist

from experiments.metrics.validation import check_clouds

__all__ = ["DEFAULT_BLOCK_SIZE", "hausdorff", "euclidean"]

logger = logging.getLogger(__name__)

#: Default number of pairwise distances per block (2**22 float64 entries = 32 MiB).
DEFAULT_BLOCK_SIZE: int = 2**22


def _row_blocks(n_rows: int, n_cols: int, block_size: int) -> range:
    """Start indices of row blocks of ``P`` holding at most ``block_size`` distances (at least one row each)."""
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer; got {block_size!r}")
    rows_per_block = max(1, int(block_size) // n_cols)
    return range(0, n_rows, rows_per_block)


def hausdorff(P: ArrayLike, Q: ArrayLike, *, block_size: int = DEFAULT_BLOCK_SIZE) -> float:
    r"""Symmetric Hausdorff distance between two point clouds (Euclidean ground metric).

    .. math::

        d_H(P, Q) = \max\Big(\max_{p \in P} \min_{q \in Q} \lVert p - q \rVert_2,\;
                             \max_{q \in Q} \min_{p \in P} \lVert p - q \rVert_2\Big)

    i.e. ``max(directed_hausdorff(P, Q), directed_hausdorff(Q, P))`` with
    :func:`scipy.spatial.distance.directed_hausdorff`. Exact: every pairwise distance is evaluated, in row blocks of
    ``P``, and both directed distances are accumulated in one pass.

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
        The Hausdorff distance; ``0.0`` iff the two clouds contain the same set of points.

    Raises
    ------
    ValueError
        On invalid clouds (see :func:`experiments.metrics.check_clouds`) or a non-positive ``block_size``.
    """
    P, Q = check_clouds(P, Q)
    n, m = P.shape[0], Q.shape[0]
    starts = _row_blocks(n, m, block_size)
    forward = 0.0  # max over p of min over q
    backward = np.full(m, np.inf)  # for each q, min over p seen so far
    step = starts.step
    for start in starts:
        block = cdist(P[start : start + step], Q)
        forward = max(forward, float(block.min(axis=1).max()))
        np.minimum(backward, block.min(axis=0), out=backward)
    result = max(forward, float(backward.max()))
    logger.debug("hausdorff: |P|=%d, |Q|=%d, d=%d, %d block(s) -> %g", n, m, P.shape[1], len(starts), result)
    return result


def euclidean(P: ArrayLike, Q: ArrayLike, *, block_size: int = DEFAULT_BLOCK_SIZE) -> float:
    r"""Sum of all point-to-point Euclidean distances between two clouds.

    .. math::

        S(P, Q) = \sum_{p \in P} \sum_{q \in Q} \lVert p - q \rVert_2

    equal to ``scipy.spatial.distance.cdist(P, Q).sum()`` -- proj18's "sum of point2point distances". It grows with
    ``len(P) * len(Q)``, so only compare values computed on clouds of equal sizes. Symmetric: ``S(P, Q) == S(Q, P)``.

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
        The summed distance, accumulated in float64.

    Raises
    ------
    ValueError
        On invalid clouds (see :func:`experiments.metrics.check_clouds`) or a non-positive ``block_size``.
    """
    P, Q = check_clouds(P, Q)
    n, m = P.shape[0], Q.shape[0]
    starts = _row_blocks(n, m, block_size)
    step = starts.step
    total = 0.0
    for start in starts:
        total += float(cdist(P[start : start + step], Q).sum(dtype=np.float64))
    logger.debug("euclidean: |P|=%d, |Q|=%d, d=%d, %d block(s) -> %g", n, m, P.shape[1], len(starts), total)
    return total
