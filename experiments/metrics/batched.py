r"""Cloud metrics on many bootstrap resamples at once.

A bootstrap evaluates a metric on ``B`` resamples ``(reference[ref_idx[r]], cloud[eval_idx[r]])``, ``r < B``, each
drawn with replacement from the same two clouds. Evaluating them one by one recomputes the same point-to-point
distances over and over (``B * s_ref * s_eval`` of them) and pays Python's per-call cost ``B`` times. Here:

* :func:`hausdorff_batch`, :func:`euclidean_batch`, :func:`chamfer_batch` get every resample's exact distance block
  ``d(P_r, Q_r)`` and reduce many resamples per kernel (``(b, s_ref, s_eval)`` tensors, torch, GPU when present).
  The blocks come either from the exact distance matrix between the points the resamples actually use, computed
  *once* -- ``pairwise_distances(reference[U_ref], cloud[U_eval])`` over the unique indices, every entry within
  ``2**-42`` relative of scipy's ``cdist`` (see :mod:`experiments.metrics.distances`) -- and gathered
  (``D[ri][:, ei]``), or from batched matrix products on the resamples' own points (same exactness). Which one is a
  cost decision (``strategy="auto"``): on a GPU the gather whenever the matrix is not larger than the resamples
  together; on a CPU a random gather from a matrix larger than the cache (~30 ns per entry) costs more than
  recomputing a 64-d distance (~8 ns), so proj18's setting (5 000-point reference, 64 d) computes per resample,
  while high dimensions or small clouds gather.
* :func:`mtopdiv_batch` builds each resample's cross-barcode matrix from gathered blocks of the precomputed
  ``d(P, Q)`` and ``d(P, P)`` matrices (the ``Q-Q`` block is zero anyway) instead of recomputing ``cdist``; both come
  from :func:`scipy.spatial.distance.cdist` (``d(P, P)`` optionally passed in once for all classes, see
  :func:`reference_distance_matrix`), whose entries do not depend on which other points are in the call, so the
  matrices -- and the scores -- are *identical* to :func:`experiments.metrics.mtopdiv` on each resample. The
  persistence call (giotto-ph / ripser++ / ripser.py) stays one per resample.
  (:func:`mtopdiv_batch` and :func:`reference_distance_matrix` live in :mod:`experiments.metrics.batched_mtopdiv`,
  re-exported here.)
* :func:`score_resamples` evaluates a list of metrics sharing that work; metrics without a batched form (``mmd``,
  ``energy``, ``wasserstein``) fall back to a loop over the resamples.

Values equal the per-resample functions of :data:`experiments.metrics.METRICS`: Hausdorff and Chamfer to
``2**-42`` relative plus scipy's own round-off, the summed distance likewise (every summand is), MTopDiv exactly.

Memory: the gathered blocks are processed in chunks of at most ``block_size`` entries (about ``6 * 8 * block_size``
bytes of working memory), plus the full matrix when one is used: at most ``max_matrix_entries * 8`` bytes
(default ``2**25`` entries = 256 MiB), plus, for MTopDiv, ``reference_distances`` when given (``n_ref**2 * 8``
bytes; the bootstrap passes it only when it fits the same budget).

Example
-------
>>> import numpy as np
>>> from experiments.metrics.batched import score_resamples
>>> rng = np.random.default_rng(0)
>>> reference, cloud = rng.normal(size=(500, 8)), rng.normal(size=(300, 8))
>>> ref_idx, eval_idx = rng.integers(0, 500, (200, 50)), rng.integers(0, 300, (200, 50))
>>> values = score_resamples(reference, cloud, ref_idx, eval_idx, ["hausdorff", "euclidean"])  # shape (2, 200)
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from experiments.metrics._kernels.blocks import DEFAULT_BLOCK_SIZE, DeviceLike, check_block_size
from experiments.metrics._kernels.checks import (
    DEFAULT_MAX_MATRIX_ENTRIES,
    STRATEGIES,
    check_max_entries,
    check_resamples,
    check_strategy,
)
from experiments.metrics._kernels.resamples import resample_blocks
from experiments.metrics.batched_mtopdiv import mtopdiv_batch, reference_distance_matrix

__all__ = [
    "BATCHED_METRICS",
    "DEFAULT_MAX_MATRIX_ENTRIES",
    "DISTANCE_METRICS",
    "STRATEGIES",
    "chamfer_batch",
    "euclidean_batch",
    "hausdorff_batch",
    "mtopdiv_batch",
    "reference_distance_matrix",
    "score_resamples",
]

logger = logging.getLogger(__name__)

#: Metrics computed from the gathered resample blocks of one shared distance matrix.
DISTANCE_METRICS: tuple[str, ...] = ("hausdorff", "euclidean", "chamfer")

# --------------------------------------------------------------------------------------------- distance blocks


_REDUCERS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "hausdorff": lambda D: torch.maximum(D.amin(dim=2).amax(dim=1), D.amin(dim=1).amax(dim=1)),
    "euclidean": lambda D: D.sum(dim=(1, 2)),
    "chamfer": lambda D: D.amin(dim=2).mean(dim=1) + D.amin(dim=1).mean(dim=1),
}


def _distance_metrics(
    P: np.ndarray,
    Q: np.ndarray,
    ri: np.ndarray,
    ei: np.ndarray,
    names: Sequence[str],
    block_size: int,
    device: DeviceLike,
    max_matrix_entries: int,
    strategy: str,
) -> dict[str, np.ndarray]:
    out = {name: np.empty(ri.shape[0]) for name in names}
    for start, D in resample_blocks(P, Q, ri, ei, block_size, device, max_matrix_entries, strategy):
        for name in names:
            out[name][start : start + D.shape[0]] = _REDUCERS[name](D).cpu().numpy()
    return out


def _distance_batch(
    name: str,
    reference: ArrayLike,
    cloud: ArrayLike,
    ref_idx: ArrayLike,
    eval_idx: ArrayLike,
    block_size: int,
    device: DeviceLike,
    max_matrix_entries: int,
    strategy: str,
) -> np.ndarray:
    P, Q, ri, ei = check_resamples(reference, cloud, ref_idx, eval_idx)
    return _distance_metrics(
        P,
        Q,
        ri,
        ei,
        [name],
        check_block_size(block_size),
        device,
        check_max_entries(max_matrix_entries),
        check_strategy(strategy),
    )[name]


def hausdorff_batch(
    reference: ArrayLike,
    cloud: ArrayLike,
    ref_idx: ArrayLike,
    eval_idx: ArrayLike,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    device: DeviceLike = None,
    max_matrix_entries: int = DEFAULT_MAX_MATRIX_ENTRIES,
    strategy: str = "auto",
) -> np.ndarray:
    r"""Hausdorff distance of every resample: ``out[r] = hausdorff(reference[ref_idx[r]], cloud[eval_idx[r]])``.

    .. math::  d_H(P_r, Q_r) = \max\big(\max_i \min_j D_{ij},\; \max_j \min_i D_{ij}\big),
               \quad D = d(P_r, Q_r) \text{ gathered from one shared exact distance matrix.}

    Parameters
    ----------
    reference : array-like of shape (n_ref, d)
        The reference cloud (training class).
    cloud : array-like of shape (n_eval, d)
        The evaluated cloud.
    ref_idx : int array of shape (n_resamples, s_ref)
        Row ``r`` indexes resample ``r``'s reference points (repeats allowed).
    eval_idx : int array of shape (n_resamples, s_eval)
        Row ``r`` indexes resample ``r``'s evaluated points.
    block_size : int, default 2**22
        Maximum number of distances per processed chunk.
    device : None, str or torch.device
        Where to compute; ``None`` (default): the CPU. CUDA only when a CUDA device is passed.
    max_matrix_entries : int, default 2**25
        Largest shared distance matrix to precompute; beyond it every resample's block is computed on its own.
    strategy : {"auto", "gather", "direct"}, default "auto"
        ``"gather"``: precompute the exact matrix over the unique indices and gather every resample's block from it;
        ``"direct"``: compute each resample's block (batched matrix products); ``"auto"``: gather when the matrix is
        within ``max_matrix_entries`` and, by a cost model measured on a CPU (computing an entry ~``6 + 0.04 d`` ns,
        gathering ~5 ns from a matrix that fits in cache, ~30 ns from a larger one), cheaper; on a GPU whenever the
        matrix has no more entries than the resamples together. Same values either way (within ``2**-42``).

    Returns
    -------
    ndarray of shape (n_resamples,)
        Equal to the per-resample :func:`experiments.metrics.hausdorff` within ``2**-42`` relative plus scipy's
        own round-off.

    Raises
    ------
    ValueError
        On invalid clouds, index arrays that are not 2-D integer arrays with in-range indices and one row per
        resample each, or a non-positive ``block_size``.
    """
    return _distance_batch(
        "hausdorff", reference, cloud, ref_idx, eval_idx, block_size, device, max_matrix_entries, strategy
    )


def euclidean_batch(
    reference: ArrayLike,
    cloud: ArrayLike,
    ref_idx: ArrayLike,
    eval_idx: ArrayLike,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    device: DeviceLike = None,
    max_matrix_entries: int = DEFAULT_MAX_MATRIX_ENTRIES,
    strategy: str = "auto",
) -> np.ndarray:
    r"""Summed distance of every resample: ``out[r] = euclidean(reference[ref_idx[r]], cloud[eval_idx[r]])``,
    i.e. ``sum_ij D_ij`` of the resample's gathered block (float64). Arguments as :func:`hausdorff_batch`."""
    return _distance_batch(
        "euclidean", reference, cloud, ref_idx, eval_idx, block_size, device, max_matrix_entries, strategy
    )


def chamfer_batch(
    reference: ArrayLike,
    cloud: ArrayLike,
    ref_idx: ArrayLike,
    eval_idx: ArrayLike,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    device: DeviceLike = None,
    max_matrix_entries: int = DEFAULT_MAX_MATRIX_ENTRIES,
    strategy: str = "auto",
) -> np.ndarray:
    r"""Chamfer distance of every resample: ``out[r] = chamfer(reference[ref_idx[r]], cloud[eval_idx[r]])``,
    i.e. ``mean_i min_j D_ij + mean_j min_i D_ij`` of the gathered block. Arguments as :func:`hausdorff_batch`."""
    return _distance_batch(
        "chamfer", reference, cloud, ref_idx, eval_idx, block_size, device, max_matrix_entries, strategy
    )


# --------------------------------------------------------------------------------------------- all metrics


def _fallback(name: str) -> Callable[..., float]:
    from experiments.metrics import METRICS  # the package imports this module's siblings, not this module

    return METRICS[name]


def _takes_device(metric: Callable[..., float]) -> bool:
    """Whether ``metric`` has a ``device`` parameter."""
    try:
        return "device" in inspect.signature(metric).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False


BATCHED_METRICS: dict[str, Callable[..., np.ndarray]] = {
    "hausdorff": hausdorff_batch,
    "euclidean": euclidean_batch,
    "chamfer": chamfer_batch,
    "mtopdiv": mtopdiv_batch,
}
"""Metrics with a batched form, by the names of :data:`experiments.metrics.METRICS`."""


def score_resamples(
    reference: ArrayLike,
    cloud: ArrayLike,
    ref_idx: ArrayLike,
    eval_idx: ArrayLike,
    metrics: Sequence[str],
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    reference_distances: np.ndarray | None = None,
    device: DeviceLike = None,
) -> np.ndarray:
    """Every metric on every resample: ``out[i, r] = METRICS[metrics[i]](reference[ref_idx[r]], cloud[eval_idx[r]],
    **metric_options[metrics[i]])``.

    Hausdorff, summed Euclidean and Chamfer distances share one pass over the gathered distance blocks (when their
    options agree); MTopDiv assembles its matrices from gathered blocks (``reference_distances`` as in
    :func:`mtopdiv_batch`); ``mmd`` by :func:`experiments.metrics.mmd_resampled.mmd_resamples` (repeated
    indices of a resample left out of the U-statistic, so ``out`` differs from ``METRICS["mmd"]`` on resamples that
    repeat a point); ``energy``, ``wasserstein`` (and any other metric) are evaluated resample by resample.
    Options of the distance metrics: ``block_size``, ``device``, ``max_matrix_entries``, ``strategy``; of
    ``mtopdiv``: ``backend``, ``max_matrix_entries``, ``device``.

    ``device`` (default ``None``: the CPU) is the device for every metric that takes one (the distance metrics and
    ``mtopdiv``, whose ``backend="auto"`` then means ripser++ on a CUDA device); a ``device`` in a metric's
    ``metric_options`` overrides it. Metrics without a ``device`` parameter run as they are (on the CPU).

    Returns
    -------
    ndarray of shape (len(metrics), n_resamples)

    Raises
    ------
    ValueError
        On an unknown metric name, invalid clouds or index arrays.
    """
    from experiments.metrics import METRICS

    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid: {', '.join(METRICS)}")
    options = {name: dict((metric_options or {}).get(name, {})) for name in metrics}
    if device is not None:
        for name in metrics:
            if name in DISTANCE_METRICS or name == "mtopdiv" or _takes_device(_fallback(name)):
                options[name].setdefault("device", device)
    P, Q, ri, ei = check_resamples(reference, cloud, ref_idx, eval_idx)
    out = np.empty((len(metrics), ri.shape[0]))
    done: dict[str, np.ndarray] = {}
    distance_names = [m for m in dict.fromkeys(metrics) if m in DISTANCE_METRICS]
    groups: dict[tuple, list[str]] = {}
    for name in distance_names:
        groups.setdefault(tuple(sorted(options[name].items(), key=lambda kv: kv[0])), []).append(name)
    for key, names in groups.items():
        opts = dict(key)
        unexpected = set(opts) - {"block_size", "device", "max_matrix_entries", "strategy"}
        if unexpected:
            raise TypeError(f"unexpected option(s) {sorted(unexpected)} for {names}")
        done.update(
            _distance_metrics(
                P,
                Q,
                ri,
                ei,
                names,
                check_block_size(opts.get("block_size", DEFAULT_BLOCK_SIZE)),
                opts.get("device"),
                check_max_entries(opts.get("max_matrix_entries", DEFAULT_MAX_MATRIX_ENTRIES)),
                check_strategy(opts.get("strategy", "auto")),
            )
        )
    for i, name in enumerate(metrics):
        if name not in done:
            if name == "mtopdiv":
                done[name] = mtopdiv_batch(P, Q, ri, ei, reference_distances=reference_distances, **options[name])
            elif name == "mmd":  # coincident resample indices left out of the U-statistic (unbiased)
                from experiments.metrics.mmd_resampled import mmd_resamples

                done[name] = mmd_resamples(P, Q, ri, ei, **options[name])
            else:
                metric = _fallback(name)
                done[name] = np.array(
                    [metric(P[a], Q[b], **options[name]) for a, b in zip(ri, ei, strict=False)], dtype=np.float64
                )
        out[i] = done[name]
    return out
