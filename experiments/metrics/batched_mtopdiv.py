r"""MTopDiv on many bootstrap resamples at once (see :mod:`experiments.metrics.batched`, which re-exports both
functions): each resample's cross-barcode matrix assembled from gathered blocks of precomputed ``cdist`` matrices,
so the matrices -- and the scores -- are those of :func:`experiments.metrics.mtopdiv` on each resample."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.distance import cdist, pdist, squareform

from experiments.metrics._kernels.blocks import DeviceLike
from experiments.metrics._kernels.checks import DEFAULT_MAX_MATRIX_ENTRIES, check_max_entries, check_resamples
from experiments.metrics.cross_barcode import cross_matrix_from_blocks, mtopdiv_from_matrix, resolve_backend
from experiments.metrics.validation import check_clouds

__all__ = ["mtopdiv_batch", "reference_distance_matrix"]

logger = logging.getLogger("experiments.metrics.batched")


def reference_distance_matrix(reference: ArrayLike) -> np.ndarray:
    """``cdist(reference, reference)``, computed as ``squareform(pdist(reference))`` (half the work, same numbers).

    Pass it to :func:`mtopdiv_batch` / :func:`score_resamples` as ``reference_distances`` to share it across the
    evaluated classes. Memory: ``n_ref**2 * 8`` bytes.
    """
    P, _ = check_clouds(reference, reference)
    if P.shape[0] == 1:
        return np.zeros((1, 1))
    return squareform(pdist(P))


def _blocks_getter(
    A: np.ndarray, B: np.ndarray, ia: np.ndarray, ib: np.ndarray, max_matrix_entries: int
) -> Callable[[int], np.ndarray]:
    """``get(r) = cdist(A[ia[r]], B[ib[r]])``, from one ``cdist`` over the unique indices when that is cheaper."""
    u_a, inv_a = np.unique(ia, return_inverse=True)
    u_b, inv_b = np.unique(ib, return_inverse=True)
    inv_a, inv_b = inv_a.reshape(ia.shape), inv_b.reshape(ib.shape)
    if len(u_a) * len(u_b) <= min(ia.shape[0] * ia.shape[1] * ib.shape[1], max_matrix_entries):
        full = cdist(A[u_a], B[u_b])
        return lambda r: full[np.ix_(inv_a[r], inv_b[r])]
    return lambda r: cdist(A[ia[r]], B[ib[r]])


def mtopdiv_batch(
    reference: ArrayLike,
    cloud: ArrayLike,
    ref_idx: ArrayLike,
    eval_idx: ArrayLike,
    *,
    backend: str = "auto",
    reference_distances: np.ndarray | None = None,
    max_matrix_entries: int = DEFAULT_MAX_MATRIX_ENTRIES,
    device: DeviceLike = None,
) -> np.ndarray:
    r"""MTopDiv of every resample: ``out[r] = mtopdiv(reference[ref_idx[r]], cloud[eval_idx[r]], backend=backend)``.

    Each resample's cross-barcode matrix (:func:`experiments.metrics.cross_distance_matrix`) is assembled from
    gathered blocks -- ``d(P, Q)`` from one ``cdist`` over the unique points the resamples use (when cheaper than
    the resamples' own blocks and within ``max_matrix_entries``), ``d(P, P)`` from ``reference_distances`` when
    given -- so the matrices are bit-for-bit those of the per-resample call and so are the scores. The persistence
    computation remains one call per resample. Not symmetric: ``reference`` is ``P`` (see
    :func:`experiments.metrics.mtopdiv`).

    Parameters
    ----------
    reference, cloud, ref_idx, eval_idx
        As :func:`hausdorff_batch`.
    backend : {"auto", "ripserplusplus", "giotto", "ripser"}, default "auto"
        Persistence engine, as :func:`experiments.metrics.mtopdiv`.
    reference_distances : ndarray of shape (n_ref, n_ref), optional
        ``cdist(reference, reference)`` (e.g. :func:`reference_distance_matrix`), shared by all evaluated classes.
        Values other than those give other scores: it is not checked beyond its shape.
    max_matrix_entries : int, default 2**25
        Largest ``d(P, Q)`` (and, without ``reference_distances``, ``d(P, P)``) matrix to precompute.
    device : None, str or torch.device, default None
        The caller's device; ``backend="auto"`` uses ripser++ only when it is a CUDA device (see
        :func:`experiments.metrics.cross_barcode.resolve_backend`). The matrices are always scipy's, on the CPU.

    Returns
    -------
    ndarray of shape (n_resamples,)

    Raises
    ------
    ValueError
        As :func:`hausdorff_batch`, on an unknown backend or a ``reference_distances`` of the wrong shape.
    """
    P, Q, ri, ei = check_resamples(reference, cloud, ref_idx, eval_idx)
    max_matrix_entries = check_max_entries(max_matrix_entries)
    name = resolve_backend(backend, device)
    cross = _blocks_getter(P, Q, ri, ei, max_matrix_entries)
    if reference_distances is not None:
        within_full = np.asarray(reference_distances, dtype=np.float64)
        if within_full.shape != (P.shape[0], P.shape[0]):
            raise ValueError(
                f"reference_distances must have shape ({P.shape[0]}, {P.shape[0]}) = (n_ref, n_ref); "
                f"got {within_full.shape}"
            )

        def within(r: int) -> np.ndarray:
            return within_full[np.ix_(ri[r], ri[r])]
    else:
        within = _blocks_getter(P, P, ri, ri, max_matrix_entries)
    out = np.empty(ri.shape[0])
    for r in range(ri.shape[0]):
        out[r] = mtopdiv_from_matrix(cross_matrix_from_blocks(cross(r), within(r)), name)[0]
    logger.debug(
        "mtopdiv_batch: %d resamples of %d + %d points, backend=%s", ri.shape[0], ri.shape[1], ei.shape[1], name
    )
    return out
