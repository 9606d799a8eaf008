r"""Distance-based comparisons of two point clouds: Hausdorff distance and summed point-to-point distance.

Both are exact -- equal to :func:`scipy.spatial.distance.directed_hausdorff` (both directions) and to
``scipy.spatial.distance.cdist(P, Q).sum()`` within ``2**-42`` relative (float64 input; scipy's own round-off is of
the same order) -- and fast: they are blocked matrix products in torch, on the GPU when one is present (and the
problem is large enough to pay for the transfer), on the CPU otherwise.

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
* :func:`euclidean` -- float64 products; per block of rows with ``N`` entries, an entry is kept from the
  expansion when its distance error bound ``E / (2 sqrt(S~ - E))`` is at most ``2**-42`` times a proven lower bound
  of the block's mean distance, else recomputed directly. The kept entries' errors therefore sum to at most
  ``2**-42`` times the block's (hence the total) sum. Sums accumulate in float64. Against scipy, whose own
  distances carry up to ``gamma_{d+2} / 2`` relative error, the difference stays below ``2**-42 + gamma_{d+2}``
  (``< 3e-13`` for ``d <= 512``).
* :func:`pairwise_distances` -- per entry: kept when ``S~ >= E (1 + 2**41)``, i.e. relative error
  ``<= 2**-42``, else recomputed directly. Zero distances (duplicate points) always come out exactly 0.

If the float32 matrix-multiply precision is lowered (``torch.set_float32_matmul_precision`` not ``"highest"``,
or a TF32/BF16 ``fp32_precision`` setting) the filter switches to float64 products, so the bound never depends on
global torch settings.

Tiny problems (at most :data:`SMALL_PROBLEM_ENTRIES` ``= 2**15`` pairs, ``device=None``) skip torch and use
:func:`scipy.spatial.distance.cdist` in one block -- exact by construction, and cheaper than torch's fixed per-call
cost at that size.

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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy.spatial.distance import cdist

from experiments.metrics.validation import check_clouds

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "ENTRY_RTOL",
    "SMALL_PROBLEM_ENTRIES",
    "SUM_RTOL",
    "euclidean",
    "hausdorff",
    "pairwise_distances",
    "resolve_device",
]

logger = logging.getLogger(__name__)

#: Default number of pairwise distances per block (2**22 float64 entries = 32 MiB).
DEFAULT_BLOCK_SIZE: int = 2**22

#: Bound on the relative error of every entry of :func:`pairwise_distances` (versus the direct float64 formula).
ENTRY_RTOL: float = 2.0**-42

#: Bound on the relative error of :func:`euclidean` (versus summing the direct float64 distances).
SUM_RTOL: float = 2.0**-42

#: Below this many pairwise entries ``device=None`` stays on the CPU even when a GPU is present.
GPU_MIN_ENTRIES: int = 2**20

#: At most this many pairwise entries with ``device=None``: scipy's ``cdist`` on the CPU, in one block -- exact by
#: construction and cheaper than torch's per-call overhead at this size (e.g. one 100 + 100-point resample).
SMALL_PROBLEM_ENTRIES: int = 2**15

#: Below this many pairwise entries :func:`hausdorff` makes one float64 pass (no float32 filter, no early exit).
EARLY_EXIT_MIN_ENTRIES: int = 2**16

_U64 = 2.0**-53
_U32 = 2.0**-24
_SEED_ROWS = 32  # rows resolved exactly before the early-exit pass, to get a good first lower bound
_FIRST_WIDTH = 32  # columns in the first early-exit round; doubles every round
_MAX_EXPONENT = 480  # |log2(spread)| beyond which the scaled bound arithmetic could under/overflow: brute force

DeviceLike = str | torch.device | None


def _row_blocks(n_rows: int, n_cols: int, block_size: int) -> range:
    """Start indices of row blocks of ``P`` holding at most ``block_size`` distances (at least one row each)."""
    _check_block_size(block_size)
    rows_per_block = max(1, int(block_size) // n_cols)
    return range(0, n_rows, rows_per_block)


def _check_block_size(block_size: int) -> int:
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer; got {block_size!r}")
    return int(block_size)


def resolve_device(device: DeviceLike = None, n_entries: int = GPU_MIN_ENTRIES) -> torch.device:
    """The torch device the metrics run on.

    ``None`` picks ``"cuda"`` when ``torch.cuda.is_available()`` and the problem has at least
    :data:`GPU_MIN_ENTRIES` pairwise entries, else ``"cpu"``; a string or ``torch.device`` is used as given.
    """
    if device is None:
        use_gpu = n_entries >= GPU_MIN_ENTRIES and torch.cuda.is_available()
        return torch.device("cuda" if use_gpu else "cpu")
    try:
        return torch.device(device)
    except (TypeError, RuntimeError) as exc:
        raise ValueError(f"device must be None, a device string or a torch.device; got {device!r}") from exc


def _gamma(k: int, u: float) -> float:
    return k * u / (1.0 - k * u)


def _float32_matmul_is_ieee(device: torch.device) -> bool:
    """Whether float32 matrix products on ``device`` run in IEEE float32 (no TF32/BF16 shortcuts)."""
    if torch.get_float32_matmul_precision() != "highest":
        return False
    paths = [("backends", "mkldnn", "matmul"), ("backends", "mkldnn")]
    if device.type == "cuda":
        paths.insert(0, ("backends", "cuda", "matmul"))
        if getattr(torch.backends.cuda.matmul, "allow_tf32", False):
            return False
    for path in paths:
        obj = torch
        for name in path:
            obj = getattr(obj, name, None)
        setting = getattr(obj, "fp32_precision", None)
        if setting not in (None, "none", "ieee"):
            return False
    return True


def _error_coefficient(dim: int, low_precision: bool, vs_direct: bool) -> tuple[float, float]:
    """``(K, epsilon_abs)`` of the bound ``|S~ - S| <= K (|a| + |b|)**2 + epsilon_abs`` (see the module docstring).

    ``S`` is the exact squared distance, or with ``vs_direct`` the one the direct float64 formula computes.
    """
    if low_precision:  # float32 product of the rounded coordinates (x2 for the -2 a.b term), float64 norms
        k = 2.0 * _U32 + _U32**2 + _gamma(dim, _U32) * (1.0 + _U32) ** 2 + _gamma(dim, _U64)
        tiny = 2.0**-126
    else:  # float64 norms and product: gamma_d (|a|^2 + |b|^2 + 2 sum_k |a_k b_k|) <= gamma_d (|a| + |b|)^2
        k = _gamma(dim, _U64)
        tiny = 2.0**-1022
    k += 6.0 * _U64  # the two additions forming S~ (2 u) and the centring (<= 2.1 u)
    if vs_direct:
        k += _gamma(dim + 2, _U64) + 4.0 * _U64  # the direct formula's own error; roundings of the comparisons
    return 1.1 * k, 4.0 * (dim + 2) * tiny


@dataclass
class _Cloud:
    """One cloud on the device: original coordinates ``x``, centred and scaled ``c`` (and its float32 copy ``low``),
    squared norms ``sq`` and norms ``norm`` of ``c``."""

    x: torch.Tensor
    c: torch.Tensor
    low: torch.Tensor | None
    sq: torch.Tensor
    norm: torch.Tensor


@dataclass
class _Pair:
    """Two prepared clouds and the scale: scaled squared distance = direct squared distance * ``s2``."""

    a: _Cloud
    b: _Cloud
    s: float
    s2: float
    device: torch.device
    low: bool


class _OutOfRange(Exception):
    """The clouds' spread is too far from 1 for the scaled bound arithmetic; use the brute-force direct path."""


def _to_tensor(X: np.ndarray, device: torch.device) -> torch.Tensor:
    if not X.flags.writeable:  # e.g. an array from Ray's object store; torch.from_numpy wants writable memory
        X = X.copy()
    return torch.from_numpy(X).to(device)


def _prepare(P: np.ndarray, Q: np.ndarray, device: torch.device, low: bool) -> _Pair:
    """Centre both clouds on the midpoint of their means and scale by a power of two (max |coordinate| in [1/2, 1))."""
    with np.errstate(over="ignore", invalid="ignore"):
        centre = 0.5 * P.mean(axis=0) + 0.5 * Q.mean(axis=0)
    if not np.isfinite(centre).all():
        raise _OutOfRange
    t_centre = torch.from_numpy(centre).to(device)
    xp, xq = _to_tensor(P, device), _to_tensor(Q, device)
    cp, cq = xp - t_centre, xq - t_centre
    amax = max(max(-float(lo), float(hi)) for lo, hi in (torch.aminmax(cp), torch.aminmax(cq)))
    if not math.isfinite(amax):
        raise _OutOfRange
    exponent = math.frexp(amax)[1] if amax > 0.0 else 0
    if abs(exponent) > _MAX_EXPONENT:
        raise _OutOfRange
    s = math.ldexp(1.0, -exponent)
    cp.mul_(s)
    cq.mul_(s)

    def cloud(x: torch.Tensor, c: torch.Tensor) -> _Cloud:
        sq = torch.einsum("ij,ij->i", c, c)
        return _Cloud(x=x, c=c, low=c.to(torch.float32) if low else None, sq=sq, norm=sq.sqrt())

    return _Pair(cloud(xp, cp), cloud(xq, cq), s, s * s, device, low)


def _direct_sq(X: torch.Tensor, Y: torch.Tensor, ii: torch.Tensor, jj: torch.Tensor, block_size: int) -> torch.Tensor:
    """Squared distances ``sum_k (X[ii] - Y[jj])**2`` by the direct formula in float64, in chunks of pairs."""
    out = torch.empty(ii.shape[0], dtype=torch.float64, device=X.device)
    step = max(1, block_size // max(1, X.shape[1]))
    for start in range(0, ii.shape[0], step):
        diff = X[ii[start : start + step]] - Y[jj[start : start + step]]
        out[start : start + step] = torch.einsum("ij,ij->i", diff, diff)
    return out


def _expansion(pair: _Pair, rows: torch.Tensor, cols: torch.Tensor | None, low: bool) -> torch.Tensor:
    """Float64 estimate ``S~`` (scaled units) for ``rows`` x ``cols`` (all columns when ``cols`` is None)."""
    a, b = pair.a, pair.b
    A = (a.low if low else a.c)[rows]
    B = b.low if low else b.c
    if cols is not None:
        B = B[cols]
    S = (A @ B.T).to(torch.float64) if low else A @ B.T
    S.mul_(-2.0)
    S.add_(a.sq[rows, None])
    S.add_(b.sq[None, :] if cols is None else b.sq[cols][None, :])
    return S


# --------------------------------------------------------------------------------------------- Hausdorff


@dataclass
class _Directed:
    """State of one directed pass: ``best`` = largest exact (direct, unscaled) squared row minimum found so far;
    ``bound`` = proven lower bound (scaled units) of the final squared answer."""

    best: float
    bound: float


_Coefficients = dict  # {low_precision: (K, epsilon_abs)}


def _chunk_bounds(
    pair: _Pair, chunk: torch.Tensor, coeffs: _Coefficients, low: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(upper, lower)``: per-row ``min_j (S~ + E)`` and the full matrix of lower bounds ``S~ - E`` (scaled).

    Holds at most the estimate, its bound and an eighth-size temporary at once (the float32 product only until it
    is widened).
    """
    K, eps_abs = coeffs[low]
    S = _expansion(pair, chunk, None, low)
    E = (pair.a.norm[chunk, None] + pair.b.norm[None, :]).square_().mul_(K).add_(eps_abs)
    upper = torch.empty(chunk.shape[0], dtype=torch.float64, device=S.device)
    sub = max(1, -(-chunk.shape[0] // 8))
    for start in range(0, chunk.shape[0], sub):
        upper[start : start + sub] = (S[start : start + sub] + E[start : start + sub]).amin(dim=1)
    E.neg_().add_(S)  # E now holds the lower bounds S~ - E
    return upper, E


def _resolve_rows(pair: _Pair, rows: torch.Tensor, st: _Directed, coeffs: _Coefficients, block_size: int) -> None:
    """Exact squared nearest-neighbour distance of each row in ``rows`` (A to B) that can still matter.

    Bounds come from the float32 product when ``pair.low``; a chunk whose candidate sets come out large (the float32
    bound is wider than the spread of the distances, e.g. clouds far apart relative to their size) is redone with the
    float64 product before paying for direct distances (and the rest of the call keeps float64).
    """
    a, b = pair.a, pair.b
    m = b.c.shape[0]
    step = max(1, block_size // m)
    for chunk in rows.split(step):
        low = pair.low
        while True:
            upper, lower = _chunk_bounds(pair, chunk, coeffs, low)
            st.bound = max(st.bound, st.best * pair.s2, float(lower.amin(dim=1).max()))
            keep = upper >= st.bound  # a row whose upper bound is below a proven lower bound cannot be the maximum
            if not bool(keep.any()):
                break
            n_kept = int(keep.sum())
            candidates = lower <= upper[:, None] if n_kept == chunk.shape[0] else lower[keep] <= upper[keep, None]
            if low and int(candidates.sum()) > 2 * n_kept + 32:
                low = pair.low = False  # sticky: the rest of this call (both directions) uses float64 bounds
                upper = lower = candidates = None
                continue
            del lower
            cand_r, cand_c = candidates.nonzero(as_tuple=True)
            del candidates
            kept_rows = chunk[keep]
            exact = _direct_sq(a.x, b.x, kept_rows[cand_r], cand_c, block_size)
            row_min = torch.full((n_kept,), math.inf, dtype=torch.float64, device=exact.device)
            row_min.scatter_reduce_(0, cand_r, exact, reduce="amin")
            st.best = max(st.best, float(row_min.max()))
            st.bound = max(st.bound, st.best * pair.s2)
            break
        upper = lower = None  # free this chunk's matrices before the next chunk allocates its own


def _retire(
    pair: _Pair, active: torch.Tensor, st: _Directed, coeffs: _Coefficients, block_size: int, order: torch.Tensor
) -> torch.Tensor:
    """Early exit over column blocks: drop every row with a column certified within ``best``; return the rest.

    Rounds of 32, 64, 128, ... columns (in the fixed random ``order``). A round in which the float32 bound retires
    nothing is repeated with the float64 product (which then stays on for the rest of this pass); the pass stops
    when a round retires nothing even so, or when the
    estimated number of columns a row still needs before it retires exceeds the columns left (a full pass is then
    cheaper).
    """
    a, b = pair.a, pair.b
    m = b.c.shape[0]
    nb_max = b.norm.max()
    low = pair.low
    pos, width = 0, _FIRST_WIDTH
    while active.numel() and pos < m:
        cols = order[pos : pos + width]
        K, eps_abs = coeffs[low]
        slack = (a.norm[active] + nb_max).square_().mul_(K).add_(eps_abs)  # per-row bound, >= every E_ij of the row
        # row i is retired when min_j (S~_ij + E_ij) <= best, i.e. min_j (|b_j|^2 - 2 a_i.b_j) <= best - |a_i|^2 - E_i
        best = st.best * pair.s2
        sq = a.sq[active]
        threshold = best - sq - slack
        threshold -= 4.0 * _U64 * (best + sq + slack)  # the rounding of this very line
        B = (b.low if low else b.c)[cols]
        nb = b.sq[cols][None, :]
        step = max(1, block_size // cols.shape[0])
        retired = torch.empty(active.shape[0], dtype=torch.bool, device=active.device)
        for start in range(0, active.shape[0], step):
            rows = active[start : start + step]
            G = (a.low if low else a.c)[rows] @ B.T
            V = (G.to(torch.float64) if low else G).mul_(-2.0).add_(nb).amin(dim=1)
            retired[start : start + step] = threshold[start : start + step] >= V
        n_retired = int(retired.sum())
        if n_retired == 0 and low:  # the float32 bound is too wide here: try the same columns in float64
            low = False
            continue
        pos += cols.shape[0]
        width *= 2
        fraction = n_retired / active.shape[0]
        active = active[~retired]
        if n_retired == 0:  # nothing can be certified (e.g. near-duplicate clouds): stop paying
            break
        per_column = -math.log1p(-fraction) / cols.shape[0] if fraction < 1.0 else math.inf
        if per_column * (m - pos) < 1.0:  # expected columns to retirement 1/p exceed what is left: go full pass
            break
    return active


def _seed_rows(pair: _Pair, forward: bool, k: int) -> torch.Tensor:
    """Rows likely to have large nearest-neighbour distances: the farthest from the other cloud's mean, plus a
    deterministic random sample."""
    a, b = (pair.a, pair.b) if forward else (pair.b, pair.a)
    n = a.c.shape[0]
    if n <= k:
        return torch.arange(n, device=pair.device)
    mu = b.c.mean(dim=0)
    far = (a.sq - 2.0 * (a.c @ mu)).topk(k // 2).indices  # |a - mu|^2 up to the constant |mu|^2
    gen = torch.Generator().manual_seed(n)
    rand = torch.randperm(n, generator=gen)[:k].to(pair.device)
    return torch.unique(torch.cat([far, rand]))[: k + k // 2]


def _directed(pair: _Pair, st: _Directed, coeffs: _Coefficients, block_size: int, early_exit: bool) -> None:
    """Update ``st`` with the directed Hausdorff distance from ``pair.a`` to ``pair.b`` (squared, exact)."""
    n, m = pair.a.c.shape[0], pair.b.c.shape[0]
    rows = torch.arange(n, device=pair.device)
    if early_exit:
        seeds = _seed_rows(pair, True, _SEED_ROWS)
        _resolve_rows(pair, seeds, st, coeffs, block_size)
        mask = torch.ones(n, dtype=torch.bool, device=pair.device)
        mask[seeds] = False
        gen = torch.Generator().manual_seed(m)
        order = torch.randperm(m, generator=gen).to(pair.device)
        rows = _retire(pair, rows[mask], st, coeffs, block_size, order)
    if rows.numel():
        _resolve_rows(pair, rows, st, coeffs, block_size)


def _swap(pair: _Pair) -> _Pair:
    return _Pair(pair.b, pair.a, pair.s, pair.s2, pair.device, pair.low)


def _steps(n: int, m: int, block_size: int) -> list[tuple[int, int]]:
    starts = _row_blocks(n, m, block_size)
    return [(start, starts.step) for start in starts]


def _hausdorff_cdist(P: np.ndarray, Q: np.ndarray, block_size: int) -> float:
    """Small clouds: every distance by :func:`scipy.spatial.distance.cdist`, in row blocks."""
    forward, backward = 0.0, np.full(Q.shape[0], np.inf)
    for start, step in _steps(P.shape[0], Q.shape[0], block_size):
        block = cdist(P[start : start + step], Q)
        forward = max(forward, float(block.min(axis=1).max()))
        np.minimum(backward, block.min(axis=0), out=backward)
    return max(forward, float(backward.max()))


def _hausdorff_brute_force(P: np.ndarray, Q: np.ndarray, block_size: int, device: torch.device) -> float:
    X, Y = _to_tensor(P, device), _to_tensor(Q, device)
    forward = 0.0
    backward = torch.full((Y.shape[0],), math.inf, dtype=torch.float64, device=device)
    step = max(1, block_size // (Y.shape[0] * X.shape[1]))
    for start in range(0, X.shape[0], step):
        diff = X[start : start + step, None, :] - Y[None, :, :]
        S = diff.square_().sum(dim=2)
        forward = max(forward, float(S.amin(dim=1).max()))
        torch.minimum(backward, S.amin(dim=0), out=backward)
    return math.sqrt(max(forward, float(backward.max())))


def hausdorff(P: ArrayLike, Q: ArrayLike, *, block_size: int = DEFAULT_BLOCK_SIZE, device: DeviceLike = None) -> float:
    r"""Symmetric Hausdorff distance between two point clouds (Euclidean ground metric).

    .. math::

        d_H(P, Q) = \max\Big(\max_{p \in P} \min_{q \in Q} \lVert p - q \rVert_2,\;
                             \max_{q \in Q} \min_{p \in P} \lVert p - q \rVert_2\Big)

    i.e. ``max(directed_hausdorff(P, Q), directed_hausdorff(Q, P))`` with
    :func:`scipy.spatial.distance.directed_hausdorff`. Exact: the value is the direct float64 distance of the pair
    that realises the maximum; matrix products only narrow down which pairs need that (see the module docstring
    for the error bound and the early exit).

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
        Where to compute. ``None``: scipy's ``cdist`` for at most ``SMALL_PROBLEM_ENTRIES`` pairs, else torch on the
        GPU when available and ``n * m >= GPU_MIN_ENTRIES``, else torch on the CPU. An explicit device always
        takes the torch path.

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
    block_size = _check_block_size(block_size)
    n, m = P.shape[0], Q.shape[0]
    if device is None and n * m <= SMALL_PROBLEM_ENTRIES:
        return _hausdorff_cdist(P, Q, block_size)
    dev = resolve_device(device, n * m)
    early_exit = dev.type == "cpu" and n * m >= EARLY_EXIT_MIN_ENTRIES
    low = early_exit and _float32_matmul_is_ieee(dev)
    try:
        pair = _prepare(P, Q, dev, low)
    except _OutOfRange:
        result = _hausdorff_brute_force(P, Q, block_size, dev)
        logger.debug("hausdorff: |P|=%d, |Q|=%d, out-of-range spread, brute force -> %g", n, m, result)
        return result
    coeffs = {flag: _error_coefficient(P.shape[1], flag, vs_direct=True) for flag in (False, True)}
    st = _Directed(best=0.0, bound=0.0)
    _directed(pair, st, coeffs, block_size, early_exit)
    _directed(_swap(pair), st, coeffs, block_size, early_exit)
    result = math.sqrt(st.best)
    logger.debug(
        "hausdorff: |P|=%d, |Q|=%d, d=%d, %s%s -> %g",
        n,
        m,
        P.shape[1],
        dev,
        " float32 filter + early exit" if low else "",
        result,
    )
    return result


# --------------------------------------------------------------------------------------------- summed distance


def _euclidean_brute_force(P: np.ndarray, Q: np.ndarray, block_size: int, device: torch.device) -> float:
    X, Y = _to_tensor(P, device), _to_tensor(Q, device)
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
        working memory is about ``4 * 8 * block_size`` bytes plus copies of the clouds.
    device : None, str or torch.device
        Where to compute. ``None``: scipy's ``cdist`` for at most ``SMALL_PROBLEM_ENTRIES`` pairs, else torch on the
        GPU when available and ``n * m >= GPU_MIN_ENTRIES``, else torch on the CPU. An explicit device always
        takes the torch path.

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
    block_size = _check_block_size(block_size)
    n, m = P.shape[0], Q.shape[0]
    if device is None and n * m <= SMALL_PROBLEM_ENTRIES:
        return sum(float(cdist(P[s : s + step], Q).sum()) for s, step in _steps(n, m, block_size))
    dev = resolve_device(device, n * m)
    try:
        pair = _prepare(P, Q, dev, low=False)
    except _OutOfRange:
        result = _euclidean_brute_force(P, Q, block_size, dev)
        logger.debug("euclidean: |P|=%d, |Q|=%d, out-of-range spread, brute force -> %g", n, m, result)
        return result
    a, b = pair.a, pair.b
    K, eps_abs = _error_coefficient(P.shape[1], False, vs_direct=False)
    nb_max = float(b.norm.max())
    scaled, direct, n_direct = 0.0, 0.0, 0
    step = max(1, block_size // m)
    for chunk in torch.arange(n, device=dev).split(step):
        S = _expansion(pair, chunk, None, low=False).clamp_(min=0.0)
        E = (a.norm[chunk] + nb_max).square_().mul_(K).add_(eps_abs)  # per-row bound on |S~ - S|
        D = S.sqrt_()
        block_sum = float(D.sum())
        # proven lower bound of the block's mean distance: sqrt(S - E) >= sqrt(S~) - sqrt(E)
        mean_low = block_sum / D.numel() - math.sqrt(float(E.max()))
        t = SUM_RTOL * mean_low
        if t > 0.0:
            # an entry with S~ >= E + (E / 2t)**2 has |d~ - d| <= E / (2 sqrt(S~ - E)) <= t: the kept entries' errors
            # sum to at most SUM_RTOL * (N * mean_low) <= SUM_RTOL * (true block sum)
            thr = (E + (E / (2.0 * t)) ** 2).sqrt_()
            bad = thr[:, None] > D
        else:  # all points (nearly) coincide: no useful bound, recompute the block directly
            bad = torch.ones_like(D, dtype=torch.bool)
        if bool(bad.any()):
            r, c = bad.nonzero(as_tuple=True)
            block_sum -= float(D[r, c].sum())
            direct += float(_direct_sq(a.x, b.x, chunk[r], c, block_size).sqrt_().sum())
            n_direct += r.shape[0]
        scaled += block_sum
    result = scaled / pair.s + direct  # dividing by a power of two is exact
    logger.debug(
        "euclidean: |P|=%d, |Q|=%d, d=%d, %s, %d entries recomputed directly -> %g",
        n,
        m,
        P.shape[1],
        dev,
        n_direct,
        result,
    )
    return result


# --------------------------------------------------------------------------------------------- distance matrix


def euclidean_mean(
    P: ArrayLike, Q: ArrayLike, *, block_size: int = DEFAULT_BLOCK_SIZE, device: DeviceLike = None
) -> float:
    r"""Mean point-to-point Euclidean distance, :math:`S(P, Q) / (|P|\,|Q|)` with :math:`S` from :func:`euclidean`.

    Equal to ``scipy.spatial.distance.cdist(P, Q).mean()``; unlike the sum it can be compared across cloud sizes.
    Symmetric. Same parameters, bounds and errors as :func:`euclidean`.
    """
    P, Q = check_clouds(P, Q)
    return euclidean(P, Q, block_size=block_size, device=device) / (P.shape[0] * Q.shape[0])


def _exact_distances(
    S: torch.Tensor,
    na: torch.Tensor,
    nb: torch.Tensor,
    K: float,
    eps_abs: float,
    direct: Callable[[tuple[torch.Tensor, ...]], torch.Tensor],
) -> torch.Tensor:
    """Turn an expansion estimate ``S`` (scaled squared distances, any shape) into distances, in place.

    ``na``/``nb`` broadcast against ``S`` to the norms of each entry's two points. Entries with
    ``S~ >= E (1 + 1/(2 ENTRY_RTOL))`` keep ``sqrt(S~)`` (relative error <= ENTRY_RTOL); the others get
    ``direct(indices)`` (scaled distances from the direct formula).
    """
    thr = (na + nb).square_().mul_(K).add_(eps_abs).mul_(1.0 + 0.5 / ENTRY_RTOL)
    bad = thr > S
    del thr
    S.clamp_(min=0.0).sqrt_()
    if bool(bad.any()):
        idx = bad.nonzero(as_tuple=True)
        S[idx] = direct(idx)
    return S


def _pairwise_tensor(P: np.ndarray, Q: np.ndarray, block_size: int, device: torch.device) -> torch.Tensor:
    """Exact distance matrix ``(n, m)`` as a float64 tensor on ``device`` (see :func:`pairwise_distances`)."""
    n, m = P.shape[0], Q.shape[0]
    try:
        pair = _prepare(P, Q, device, low=False)
    except _OutOfRange:
        X, Y = _to_tensor(P, device), _to_tensor(Q, device)
        out = torch.empty((n, m), dtype=torch.float64, device=device)
        step = max(1, block_size // (m * P.shape[1]))
        for start in range(0, n, step):
            diff = X[start : start + step, None, :] - Y[None, :, :]
            out[start : start + step] = diff.square_().sum(dim=2).sqrt_()
        return out
    a, b = pair.a, pair.b
    K, eps_abs = _error_coefficient(P.shape[1], False, vs_direct=False)
    out = torch.empty((n, m), dtype=torch.float64, device=device)
    step = max(1, block_size // m)
    for chunk in torch.arange(n, device=device).split(step):

        def direct(idx: tuple[torch.Tensor, ...], chunk: torch.Tensor = chunk) -> torch.Tensor:
            return _direct_sq(a.x, b.x, chunk[idx[0]], idx[1], block_size).sqrt_().mul_(pair.s)

        S = _expansion(pair, chunk, None, low=False)
        out[chunk[0] : chunk[-1] + 1] = _exact_distances(S, a.norm[chunk, None], b.norm[None, :], K, eps_abs, direct)
    return out.div_(pair.s)


def pairwise_distances(
    P: ArrayLike, Q: ArrayLike, *, block_size: int = DEFAULT_BLOCK_SIZE, device: DeviceLike = None
) -> np.ndarray:
    r"""Euclidean distance matrix ``D[i, j] = ||P[i] - Q[j]||_2``, each entry within ``2**-42`` relative of
    ``scipy.spatial.distance.cdist(P, Q)`` (:data:`ENTRY_RTOL`, a rigorous bound; exact zeros stay zero).

    Computed in row blocks of at most ``block_size`` entries as matrix products in torch (GPU when present and
    worth it), with a direct float64 re-check of every entry the error bound cannot certify (see the module
    docstring). The output itself is ``n * m`` float64 values -- use it where the full matrix is wanted (e.g. the
    bootstrap gathers each resample's block from it).

    Raises
    ------
    ValueError
        On invalid clouds (see :func:`experiments.metrics.check_clouds`) or a non-positive ``block_size``.
    """
    P, Q = check_clouds(P, Q)
    block_size = _check_block_size(block_size)
    if device is None and P.shape[0] * Q.shape[0] <= SMALL_PROBLEM_ENTRIES:
        return cdist(P, Q)
    dev = resolve_device(device, P.shape[0] * Q.shape[0])
    return _pairwise_tensor(P, Q, block_size, dev).cpu().numpy()
