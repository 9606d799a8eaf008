"""Argument checks of the batched metrics (:mod:`experiments.metrics.batched`): resample index arrays, the matrix
budget and the block strategy; each raises ``ValueError`` with a message that says what is wrong."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from experiments.metrics.validation import check_clouds

__all__ = [
    "DEFAULT_MAX_MATRIX_ENTRIES",
    "STRATEGIES",
    "check_indices",
    "check_max_entries",
    "check_resamples",
    "check_strategy",
]

#: Largest full distance matrix (entries) the batched metrics precompute: 2**25 float64 = 256 MiB.
DEFAULT_MAX_MATRIX_ENTRIES: int = 2**25

#: How the resample blocks are obtained: gathered from one shared matrix, computed per resample, or chosen by cost.
STRATEGIES: tuple[str, ...] = ("auto", "gather", "direct")


def check_indices(idx: ArrayLike, n_points: int, name: str) -> np.ndarray:
    """``idx`` as an int64 array when it is a non-empty 2-D integer array ``(n_resamples, sample_size)`` of indices
    in ``[0, n_points)``."""
    try:
        arr = np.asarray(idx)
    except (TypeError, ValueError) as exc:  # pragma: no cover - np.asarray rarely fails
        raise ValueError(f"{name} cannot be converted to an array: {exc}") from exc
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (n_resamples, sample_size); got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer indices; got dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() >= n_points:
        raise ValueError(f"{name} holds indices outside [0, {n_points}): min {arr.min()}, max {arr.max()}")
    return arr.astype(np.int64, copy=False)


def check_resamples(
    reference: ArrayLike, cloud: ArrayLike, ref_idx: ArrayLike, eval_idx: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The two clouds (:func:`experiments.metrics.check_clouds`) and both index arrays (:func:`check_indices`), with
    one row per resample each."""
    P, Q = check_clouds(reference, cloud)
    ri = check_indices(ref_idx, P.shape[0], "ref_idx")
    ei = check_indices(eval_idx, Q.shape[0], "eval_idx")
    if ri.shape[0] != ei.shape[0]:
        raise ValueError(
            f"ref_idx and eval_idx must have one row per resample each; got {ri.shape[0]} and {ei.shape[0]} rows"
        )
    return P, Q, ri, ei


def check_max_entries(max_matrix_entries: int) -> int:
    """``max_matrix_entries`` as an int when it is a non-negative integer (not a bool)."""
    if (
        isinstance(max_matrix_entries, bool)
        or not isinstance(max_matrix_entries, (int, np.integer))
        or max_matrix_entries < 0
    ):
        raise ValueError(f"max_matrix_entries must be a non-negative integer; got {max_matrix_entries!r}")
    return int(max_matrix_entries)


def check_strategy(strategy: str) -> str:
    """``strategy`` when it is one of :data:`STRATEGIES`."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; valid: {', '.join(map(repr, STRATEGIES))}")
    return strategy
