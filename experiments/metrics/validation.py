"""Input validation for point-cloud metrics.

Every metric in :mod:`experiments.metrics` calls :func:`check_clouds` once, at its boundary, and then works on
plain float64 arrays (the pattern of scikit-learn's ``check_pairwise_arrays``).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["check_clouds"]


def _as_cloud(X: ArrayLike, name: str) -> np.ndarray:
    """Convert one cloud to a C-contiguous float64 array of shape ``(n_points, n_dims)`` or raise ``ValueError``."""
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} cannot be converted to a float64 array: {exc}") from exc
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_points, n_dims); got a {arr.ndim}-D array of shape {arr.shape}"
        )
    n_points, n_dims = arr.shape
    if n_points == 0:
        raise ValueError(f"{name} is an empty cloud: it has 0 points (shape {arr.shape})")
    if n_dims == 0:
        raise ValueError(f"{name} is an empty cloud: its points have 0 dimensions (shape {arr.shape})")
    finite = np.isfinite(arr)
    if not finite.all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        parts = []
        if n_nan:
            parts.append(f"{n_nan} NaN value{'s' if n_nan != 1 else ''}")
        if n_inf:
            parts.append(f"{n_inf} infinite value{'s' if n_inf != 1 else ''}")
        raise ValueError(f"{name} contains {' and '.join(parts)}; every coordinate must be finite")
    return np.ascontiguousarray(arr)


def check_clouds(P: ArrayLike, Q: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate two point clouds and return them as float64 arrays.

    Parameters
    ----------
    P : array-like of shape (n_points_P, n_dims)
        First point cloud, one point per row.
    Q : array-like of shape (n_points_Q, n_dims)
        Second point cloud, one point per row, same number of dimensions as ``P``.

    Returns
    -------
    P, Q : tuple of ndarray
        C-contiguous float64 arrays with the same shapes as the inputs.

    Raises
    ------
    ValueError
        If a cloud is not 2-D, has 0 points or 0 dimensions, contains NaN or infinite values, or if the two clouds
        have different numbers of dimensions. The message names the offending cloud (``P`` or ``Q``).
    """
    P_arr = _as_cloud(P, "P")
    Q_arr = _as_cloud(Q, "Q")
    if P_arr.shape[1] != Q_arr.shape[1]:
        raise ValueError(
            f"P and Q must have the same number of dimensions; P has {P_arr.shape[1]} "
            f"(shape {P_arr.shape}) and Q has {Q_arr.shape[1]} (shape {Q_arr.shape})"
        )
    return P_arr, Q_arr
