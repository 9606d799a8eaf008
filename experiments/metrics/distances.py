r"""Distance-based comparisons of two point clouds: Hausdorff distance and summed point-to-point distance.

Both are exact -- equal to :func:`scipy.spatial.distance.directed_hausdorff` (both directions) and to
``scipy.spatial.distance.cdist(P, Q).sum()`` within ``2**-42`` relative (float64 input; scipy's own round-off is of
the same order) -- and fast: blocked matrix products in torch on the device the caller names (``device=``; default
the CPU -- nothing runs on a GPU unless a CUDA device is passed), with guards that pick scipy's own direct paths where
those are faster.

How the result stays exact
--------------------------
Squared distances are first *estimated* through the Gram expansion

.. math::  \tilde S_{ij} = \lVert a_i \rVert^2 + \lVert b_j \rVert^2 - 2\, a_i \cdot b_j ,

one matrix product per block. ``a_i``, ``b_j`` are the points after subtracting a common centre and multiplying by a
power of two (both leave distances unchanged: the shift is exact up to one rounding per coordinate, the scaling is
exact), so the expansion does not cancel catastrophically on clouds far from the origin (``1e6`` + small noise). The
estimate carries a rigorous forward error bound (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed.,
sec. 3.1: a length-``d`` dot product computed in any order with unit round-off ``u`` is off by at most
``gamma_d * sum_k |a_k b_k|``, ``gamma_d = d u / (1 - d u)``):

.. math::  |\tilde S_{ij} - S_{ij}| \le E_{ij} = K\,(\lVert a_i \rVert + \lVert b_j \rVert)^2 + \epsilon_\text{abs},
           \qquad K = 1.1\,\big(c + 6 u_{64}\big),

with ``S_ij`` the exact squared distance. For a float64 product ``c = gamma^(64)_d`` (it bounds the norms and the
product together: ``gamma_d (|a|^2 + |b|^2 + 2 sum_k |a_k b_k|) <= gamma_d (|a| + |b|)^2``); for a float32 product
of the rounded coordinates ``c = 2 u_32 + u_32**2 + gamma^(32)_d (1 + u_32)**2 + gamma^(64)_d``. ``6 u_64`` covers
the two additions forming ``S~`` and the centring (``|d_centred - d| <= 1.01 u_64 (|a| + |b|)``), ``1.1`` is a
safety margin, ``epsilon_abs = 4 (d + 2) * 2**-126`` (float32) resp. ``2**-1022`` (float64) covers underflow of
coordinates far below the largest one (flush-to-zero included). Where the estimate is compared with values of the
*direct* formula ``sum_k (p_k - q_k)**2`` (float64, original coordinates -- what scipy computes), ``K`` also
includes that formula's own error ``gamma^(64)_{d+2}`` and ``4 u_64`` for the comparisons' roundings. Whatever the
bound cannot decide is recomputed with the direct formula in float64:

* :func:`hausdorff` -- for every row the true nearest neighbour lies among the *candidates*
  ``{j : S~_ij - E_ij <= min_l (S~_il + E_il)}``; their direct distances give the row minimum exactly. Rows that
  cannot raise the maximum are skipped: a row is retired as soon as one column certifies ``S~_ij + E_ij <=`` the
  largest exact value found so far (an early exit over column blocks, the vectorised analogue of scipy's early
  break), and rows whose upper bound lies below a proven lower bound of the answer are never resolved. On the CPU
  the bounds come from a float32 product (twice the speed of float64; the bound is wider, still rigorous), on a GPU
  from a float64 product; where the float32 bound is too wide to decide (an early-exit round retires nothing, or
  the candidate sets come out large -- e.g. clouds far apart relative to their spread) the same step is redone with
  the float64 product. The result is a direct-formula distance of one pair -- the same number scipy returns up to
  the summation order of one length-``d`` sum.
* :func:`euclidean` -- float64 products; per block, the entries kept from the expansion have error bounds
  ``E / (d~ + sqrt(S~ - E))`` summing to at most ``2**-42`` times a proven lower bound of the block's sum (a
  per-block budget, :mod:`experiments.metrics._kernels.summed`: on large-norm clouds the few entries with small
  distances or outlying norms spend the budget instead of failing a uniform per-entry test), the rest is
  recomputed directly. Sums accumulate in float64. Against scipy, whose own distances carry up to
  ``gamma_{d+2} / 2`` relative error, the difference stays below ``2**-42 + gamma_{d+2}`` (``< 3e-13`` for
  ``d <= 512``).
* :func:`pairwise_distances` -- per entry: kept when ``S~ >= E (1 + 2**41)``, i.e. relative error
  ``<= 2**-42``, else recomputed directly. Zero distances (duplicate points) always come out exactly 0.

If the float32 matrix-multiply precision is lowered (``torch.set_float32_matmul_precision`` not ``"highest"``,
or a TF32/BF16 ``fp32_precision`` setting) the filter switches to float64 products, so the bound never depends on
global torch settings.

The guards: which exact path runs
---------------------------------
Cheap tests on the data pick the fastest exact path; the crossovers were measured on the 2-core development machine
(``benchmarks/metrics_speed.py``, BENCHMARKS.md, section "Exact metrics on real-statistics clouds"):

* ``device=None`` and at most :data:`SMALL_PROBLEM_ENTRIES` ``= 2**15`` pairs: scipy's ``cdist`` in one block
  (exact by construction; cheaper than torch's fixed per-call cost at that size, e.g. one 100 + 100 resample).
* :func:`hausdorff`, ``device=None``, per direction: first the direct early break
  (:func:`~experiments.metrics._kernels.nearest.direct_pass`, scipy's ``directed_hausdorff`` loop vectorised over
  rows with ``cdist``: columns in rounds of 4, 8, 16, ... in a fixed random order, the 4 rows with the largest running
  minima resolved in full after the first round, a row dropped once a column lies within the best exact minimum so
  far). It is its own guard: it stops when the rows still open are predicted, from the last round's drop rate, to
  take it past ``max(n m / DIRECT_RATIO, n DIRECT_WORK / d)`` direct distances (``DIRECT_RATIO = 30``: the expansion
  is about that much cheaper per distance; ``DIRECT_WORK = 4096``), and the bounded expansion does the rows still
  open. Measured crossover (2 cores, BENCHMARKS.md "Exact metrics, fast", section (r)): post-ReLU embeddings (64-d
  and 512-d, 1 000 to 10 000 points) finish in the direct pass both ways, 1.1-1.6x faster than scipy; L2-normalised
  512-d Gaussians and near-duplicates stop after the first round (a round drops almost no row) and go to the
  expansion, 4.7-5x faster than scipy.
* :func:`euclidean` and :func:`pairwise_distances`: a block where more than ``DIRECT_BLOCK_FRACTION = 0.2`` of the
  entries fail the bound is computed by ``cdist`` as a whole (a scattered re-checked pair costs ~5 ``cdist``
  entries); :func:`euclidean` first runs a 64-row probe block and, when even that had to go direct, sends every
  block straight to ``cdist`` without an expansion (the "direct float64 path up front": never much slower than
  scipy).

Memory
------
At most ``block_size`` pairwise entries are held per block (at least one row): peak working memory is about
``6 * 8 * block_size`` bytes (the float64 estimate, its bound, two temporaries, the float32 product and index
masks) plus ``3 * 8 * (n + m) * d`` bytes for the coordinate copies (original, centred, float32) -- with the default
``block_size = 2**22``, about 200 MiB plus the copies, whatever the cloud sizes: two 50 000-point clouds never
materialise the 2.5e9-entry matrix. The direct re-checks run in chunks of at most ``block_size`` coordinates.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy.spatial.distance import cdist

from experiments.metrics._kernels import nearest
from experiments.metrics._kernels.blocks import (
    DEFAULT_BLOCK_SIZE,
    DeviceLike,
    check_block_size,
    resolve_device,
    row_blocks,
    steps,
    to_tensor,
)
from experiments.metrics._kernels.bounds import error_coefficient, float32_matmul_is_ieee
from experiments.metrics._kernels.expansion import ENTRY_RTOL, OutOfRange, pairwise_tensor, prepare, swap
from experiments.metrics._kernels.summed import SUM_RTOL, summed_distance
from experiments.metrics.validation import check_clouds

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "ENTRY_RTOL",
    "SMALL_PROBLEM_ENTRIES",
    "SUM_RTOL",
    "DeviceLike",
    "euclidean",
    "euclidean_mean",
    "hausdorff",
    "pairwise_distances",
    "resolve_device",
    "row_blocks",
]

logger = logging.getLogger(__name__)

#: At most this many pairwise entries with ``device=None``: scipy's ``cdist`` on the CPU, in one block -- exact by
#: construction and cheaper than torch's per-call overhead at this size (e.g. one 100 + 100-point resample).
SMALL_PROBLEM_ENTRIES: int = 2**15

#: Below this many pairwise entries :func:`hausdorff` makes one float64 pass (no float32 filter, no early exit).
EARLY_EXIT_MIN_ENTRIES: int = 2**16


def hausdorff(P: ArrayLike, Q: ArrayLike, *, block_size: int = DEFAULT_BLOCK_SIZE, device: DeviceLike = None) -> float:
    r"""Symmetric Hausdorff distance between two point clouds (Euclidean ground metric).

    .. math::

        d_H(P, Q) = \max\Big(\max_{p \in P} \min_{q \in Q} \lVert p - q \rVert_2,\;
                             \max_{q \in Q} \min_{p \in P} \lVert p - q \rVert_2\Big)

    i.e. ``max(directed_hausdorff(P, Q), directed_hausdorff(Q, P))`` with
    :func:`scipy.spatial.distance.directed_hausdorff`. Exact: the value is the direct float64 distance of the pair
    that realises the maximum; matrix products only narrow down which pairs need that (see the module docstring
    for the error bound, the early exit and the guard that hands heavily overlapping clouds to scipy's loop).

    Parameters
    ----------
    P : array-like of shape (n, d)
        First point cloud.
    Q : array-like of shape (m, d)
        Second point cloud.
    block_size : int, default 2**22
        Maximum number of pairwise distances held in memory at once (at least one row of ``m`` distances); peak
        working memory is about ``6 * 8 * block_size`` bytes plus copies of the clouds.
    device : None, str or torch.device
        Where to compute. ``None`` (default): the CPU, choosing between scipy's ``cdist`` (at most
        ``SMALL_PROBLEM_ENTRIES`` pairs), the direct early break (per direction, guarding itself) and torch. An
        explicit device always takes the torch path on that device; CUDA only when a CUDA device is passed.

    Returns
    -------
    float
        The Hausdorff distance; ``0.0`` iff the two clouds contain the same set of points.

    Raises
    ------
    ValueError
        On invalid clouds (see :func:`experiments.metrics.check_clouds`), a non-positive ``block_size`` or an
        invalid ``device``.
    """
    P, Q = check_clouds(P, Q)
    block_size = check_block_size(block_size)
    n, m = P.shape[0], Q.shape[0]
    if device is None and n * m <= SMALL_PROBLEM_ENTRIES:
        return nearest.hausdorff_cdist(P, Q, block_size)
    dev = resolve_device(device)
    st = nearest.Directed(best=0.0, bound=0.0)
    open_rows: list[torch.Tensor | None] = [None, None]  # forward (P -> Q), backward (Q -> P): rows still to do
    if device is None:
        for k, (A, B) in enumerate(((P, Q), (Q, P))):
            budget = nearest.direct_budget(A.shape[0], B.shape[0], A.shape[1])
            st.best, rows = nearest.direct_pass(A, B, st.best, budget)
            open_rows[k] = torch.from_numpy(rows)
        if not any(r.numel() for r in open_rows):
            logger.debug("hausdorff: |P|=%d, |Q|=%d, direct early break both ways -> %g", n, m, math.sqrt(st.best))
            return math.sqrt(st.best)
    todo = [r is None or r.numel() > 0 for r in open_rows]
    early_exit = dev.type == "cpu" and n * m >= EARLY_EXIT_MIN_ENTRIES
    low = early_exit and float32_matmul_is_ieee(dev)
    try:
        pair = prepare(P, Q, dev, low)
    except OutOfRange:
        result = nearest.hausdorff_brute_force(P, Q, block_size, dev)
        logger.debug("hausdorff: |P|=%d, |Q|=%d, out-of-range spread, brute force -> %g", n, m, result)
        return result
    st.bound = st.best * pair.s2
    coeffs = {flag: error_coefficient(P.shape[1], flag, vs_direct=True) for flag in (False, True)}
    if todo[0]:
        nearest.directed(pair, st, coeffs, block_size, early_exit, open_rows[0])
    if todo[1]:
        nearest.directed(swap(pair), st, coeffs, block_size, early_exit, open_rows[1])
    result = math.sqrt(st.best)
    logger.debug(
        "hausdorff: |P|=%d, |Q|=%d, d=%d, %s%s, expansion for %s -> %g",
        n,
        m,
        P.shape[1],
        dev,
        " float32 filter + early exit" if low else "",
        "both directions" if all(todo) else ("P -> Q" if todo[0] else "Q -> P"),
        result,
    )
    return result


def _euclidean_brute_force(P: np.ndarray, Q: np.ndarray, block_size: int, device: torch.device) -> float:
    X, Y = to_tensor(P, device), to_tensor(Q, device)
    total = 0.0
    step = max(1, block_size // (Y.shape[0] * X.shape[1]))
    for start in range(0, X.shape[0], step):
        diff = X[start : start + step, None, :] - Y[None, :, :]
        total += float(diff.square_().sum(dim=2).sqrt_().sum())
    return total


def euclidean(P: ArrayLike, Q: ArrayLike, *, block_size: int = DEFAULT_BLOCK_SIZE, device: DeviceLike = None) -> float:
    r"""Sum of all point-to-point Euclidean distances between two clouds.

    .. math::

        S(P, Q) = \sum_{p \in P} \sum_{q \in Q} \lVert p - q \rVert_2

    equal to ``scipy.spatial.distance.cdist(P, Q).sum()`` -- proj18's "sum of point2point distances" -- within
    :data:`SUM_RTOL` ``= 2**-42`` relative (a rigorous bound; see the module docstring). It grows with
    ``len(P) * len(Q)``, so only compare values computed on clouds of equal sizes. Symmetric: ``S(P, Q) == S(Q, P)``.

    Parameters
    ----------
    P : array-like of shape (n, d)
        First point cloud.
    Q : array-like of shape (m, d)
        Second point cloud.
    block_size : int, default 2**22
        Maximum number of pairwise distances held in memory at once (at least one row of ``m`` distances); peak
        working memory is about ``6 * 8 * block_size`` bytes plus copies of the clouds.
    device : None, str or torch.device
        Where to compute. ``None`` (default): the CPU, scipy's ``cdist`` for at most ``SMALL_PROBLEM_ENTRIES``
        pairs, else torch. An explicit device always takes the torch path on that device; CUDA only when a CUDA
        device is passed. Blocks the bound cannot certify go to the direct formula (the guard, module docstring).

    Returns
    -------
    float
        The summed distance, accumulated in float64.

    Raises
    ------
    ValueError
        On invalid clouds (see :func:`experiments.metrics.check_clouds`), a non-positive ``block_size`` or an
        invalid ``device``.
    """
    P, Q = check_clouds(P, Q)
    block_size = check_block_size(block_size)
    n, m = P.shape[0], Q.shape[0]
    if device is None and n * m <= SMALL_PROBLEM_ENTRIES:
        return sum(float(cdist(P[s : s + step], Q).sum()) for s, step in steps(n, m, block_size))
    dev = resolve_device(device)
    try:
        pair = prepare(P, Q, dev, low=False)
    except OutOfRange:
        result = _euclidean_brute_force(P, Q, block_size, dev)
        logger.debug("euclidean: |P|=%d, |Q|=%d, out-of-range spread, brute force -> %g", n, m, result)
        return result
    K, eps_abs = error_coefficient(P.shape[1], False, vs_direct=False)
    result, n_direct, up_front = summed_distance(pair, K, eps_abs, block_size)
    logger.debug(
        "euclidean: |P|=%d, |Q|=%d, d=%d, %s, %d entries recomputed directly%s -> %g",
        n,
        m,
        P.shape[1],
        dev,
        n_direct,
        " (direct path after the probe block)" if up_front else "",
        result,
    )
    return result


def euclidean_mean(
    P: ArrayLike, Q: ArrayLike, *, block_size: int = DEFAULT_BLOCK_SIZE, device: DeviceLike = None
) -> float:
    r"""Mean point-to-point Euclidean distance, :math:`S(P, Q) / (|P|\,|Q|)` with :math:`S` from :func:`euclidean`.

    Equal to ``scipy.spatial.distance.cdist(P, Q).mean()``; unlike the sum it can be compared across cloud sizes.
    Symmetric. Same parameters (``device=`` included), bounds and errors as :func:`euclidean`.
    """
    P, Q = check_clouds(P, Q)
    return euclidean(P, Q, block_size=block_size, device=device) / (P.shape[0] * Q.shape[0])


def pairwise_distances(
    P: ArrayLike, Q: ArrayLike, *, block_size: int = DEFAULT_BLOCK_SIZE, device: DeviceLike = None
) -> np.ndarray:
    r"""Euclidean distance matrix ``D[i, j] = ||P[i] - Q[j]||_2``, each entry within ``2**-42`` relative of
    ``scipy.spatial.distance.cdist(P, Q)`` (:data:`ENTRY_RTOL`, a rigorous bound; exact zeros stay zero).

    Computed in row blocks of at most ``block_size`` entries as matrix products in torch on ``device`` (default
    the CPU; CUDA only when a CUDA device is passed), with a direct float64 re-check of every entry the error bound
    cannot certify (see the module docstring). The output itself is ``n * m`` float64 values -- use it where the
    full matrix is wanted (e.g. the bootstrap gathers each resample's block from it).

    Raises
    ------
    ValueError
        On invalid clouds (see :func:`experiments.metrics.check_clouds`), a non-positive ``block_size`` or an
        invalid ``device``.
    """
    P, Q = check_clouds(P, Q)
    block_size = check_block_size(block_size)
    if device is None and P.shape[0] * Q.shape[0] <= SMALL_PROBLEM_ENTRIES:
        return cdist(P, Q)
    return pairwise_tensor(P, Q, block_size, resolve_device(device)).cpu().numpy()
