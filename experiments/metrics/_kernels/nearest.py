"""Hausdorff kernels: exact row minima from the bounded expansion, the early exit over column blocks, and scipy's
early-break loop with the guard that picks it (see :func:`experiments.metrics.distances.hausdorff`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial.distance import cdist, directed_hausdorff

from experiments.metrics._kernels.blocks import steps, to_tensor
from experiments.metrics._kernels.bounds import U64
from experiments.metrics._kernels.expansion import Pair, direct_sq, expansion

__all__ = [
    "BREAK_RATIO",
    "BREAK_SAMPLE",
    "BREAK_WORK",
    "FIRST_WIDTH",
    "SEED_ROWS",
    "Coefficients",
    "Directed",
    "break_columns",
    "chunk_bounds",
    "directed",
    "hausdorff_brute_force",
    "hausdorff_cdist",
    "prefers_scipy",
    "resolve_rows",
    "retire",
    "scipy_directed",
    "seed_rows",
]

SEED_ROWS = 32  # rows resolved exactly before the early-exit pass, to get a good first lower bound
FIRST_WIDTH = 32  # columns in the first early-exit round; doubles every round

#: Guard of scipy's early-break path, per direction (see :func:`prefers_scipy`): scipy's
#: :func:`~scipy.spatial.distance.directed_hausdorff` when its loop is predicted to evaluate ``W`` columns per row
#: with ``W * d <= BREAK_WORK`` coordinate operations, or ``W * BREAK_RATIO <= m`` (ours works through all ``m``
#: columns of a row in matrix products; scipy's loop through ``W``, about ``BREAK_RATIO`` times slower per column).
#: Measured on 2 cores (BENCHMARKS.md, "Hausdorff guard"): scipy's loop is the faster one down to ``m / W`` ~ 45
#: (post-ReLU 64-d and 512-d embeddings: ``m / W`` = 45-400; 512-d Gaussians, also 1e3 apart: 45-70, scipy
#: 1.1-2.5x faster), ours from ``m / W`` ~ 15 (L2-normalised 512-d Gaussians: 3.8x) and on near-duplicates
#: (``m / W`` ~ 1: 3x).
BREAK_WORK: float = 4096.0
BREAK_RATIO: float = 30.0

#: Rows x columns of the guard's sample (``cdist`` on at most this many entries).
BREAK_SAMPLE: tuple[int, int] = (16, 256)


@dataclass
class Directed:
    """State of one directed pass: ``best`` = largest exact (direct, unscaled) squared row minimum found so far;
    ``bound`` = proven lower bound (scaled units) of the final squared answer."""

    best: float
    bound: float


Coefficients = dict  # {low_precision: (K, epsilon_abs)}


def chunk_bounds(pair: Pair, chunk: torch.Tensor, coeffs: Coefficients, low: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(upper, lower)``: per-row ``min_j (S~ + E)`` and the full matrix of lower bounds ``S~ - E`` (scaled).

    Holds at most the estimate, its bound and an eighth-size temporary at once (the float32 product only until it
    is widened).
    """
    K, eps_abs = coeffs[low]
    S = expansion(pair, chunk, None, low)
    E = (pair.a.norm[chunk, None] + pair.b.norm[None, :]).square_().mul_(K).add_(eps_abs)
    upper = torch.empty(chunk.shape[0], dtype=torch.float64, device=S.device)
    sub = max(1, -(-chunk.shape[0] // 8))
    for start in range(0, chunk.shape[0], sub):
        upper[start : start + sub] = (S[start : start + sub] + E[start : start + sub]).amin(dim=1)
    E.neg_().add_(S)  # E now holds the lower bounds S~ - E
    return upper, E


def resolve_rows(pair: Pair, rows: torch.Tensor, st: Directed, coeffs: Coefficients, block_size: int) -> None:
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
            upper, lower = chunk_bounds(pair, chunk, coeffs, low)
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
            exact = direct_sq(a.x, b.x, kept_rows[cand_r], cand_c, block_size)
            row_min = torch.full((n_kept,), math.inf, dtype=torch.float64, device=exact.device)
            row_min.scatter_reduce_(0, cand_r, exact, reduce="amin")
            st.best = max(st.best, float(row_min.max()))
            st.bound = max(st.bound, st.best * pair.s2)
            break
        upper = lower = None  # free this chunk's matrices before the next chunk allocates its own


def retire(
    pair: Pair, active: torch.Tensor, st: Directed, coeffs: Coefficients, block_size: int, order: torch.Tensor
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
    pos, width = 0, FIRST_WIDTH
    while active.numel() and pos < m:
        cols = order[pos : pos + width]
        K, eps_abs = coeffs[low]
        slack = (a.norm[active] + nb_max).square_().mul_(K).add_(eps_abs)  # per-row bound, >= every E_ij of the row
        # row i is retired when min_j (S~_ij + E_ij) <= best, i.e. min_j (|b_j|^2 - 2 a_i.b_j) <= best - |a_i|^2 - E_i
        best = st.best * pair.s2
        sq = a.sq[active]
        threshold = best - sq - slack
        threshold -= 4.0 * U64 * (best + sq + slack)  # the rounding of this very line
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


def seed_rows(pair: Pair, forward: bool, k: int) -> torch.Tensor:
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


def directed(pair: Pair, st: Directed, coeffs: Coefficients, block_size: int, early_exit: bool) -> None:
    """Update ``st`` with the directed Hausdorff distance from ``pair.a`` to ``pair.b`` (squared, exact)."""
    n, m = pair.a.c.shape[0], pair.b.c.shape[0]
    rows = torch.arange(n, device=pair.device)
    if early_exit:
        seeds = seed_rows(pair, True, SEED_ROWS)
        resolve_rows(pair, seeds, st, coeffs, block_size)
        mask = torch.ones(n, dtype=torch.bool, device=pair.device)
        mask[seeds] = False
        gen = torch.Generator().manual_seed(m)
        order = torch.randperm(m, generator=gen).to(pair.device)
        rows = retire(pair, rows[mask], st, coeffs, block_size, order)
    if rows.numel():
        resolve_rows(pair, rows, st, coeffs, block_size)


def hausdorff_cdist(P: np.ndarray, Q: np.ndarray, block_size: int) -> float:
    """Small clouds: every distance by :func:`scipy.spatial.distance.cdist`, in row blocks."""
    forward, backward = 0.0, np.full(Q.shape[0], np.inf)
    for start, step in steps(P.shape[0], Q.shape[0], block_size):
        block = cdist(P[start : start + step], Q)
        forward = max(forward, float(block.min(axis=1).max()))
        np.minimum(backward, block.min(axis=0), out=backward)
    return max(forward, float(backward.max()))


def hausdorff_brute_force(P: np.ndarray, Q: np.ndarray, block_size: int, device: torch.device) -> float:
    X, Y = to_tensor(P, device), to_tensor(Q, device)
    forward = 0.0
    backward = torch.full((Y.shape[0],), math.inf, dtype=torch.float64, device=device)
    step = max(1, block_size // (Y.shape[0] * X.shape[1]))
    for start in range(0, X.shape[0], step):
        diff = X[start : start + step, None, :] - Y[None, :, :]
        S = diff.square_().sum(dim=2)
        forward = max(forward, float(S.amin(dim=1).max()))
        torch.minimum(backward, S.amin(dim=0), out=backward)
    return math.sqrt(max(forward, float(backward.max())))


def break_columns(A: np.ndarray, B: np.ndarray) -> float:
    """Predicted columns per row that scipy's early-break loop (``directed_hausdorff(A, B)``) evaluates.

    On a deterministic sample of :data:`BREAK_SAMPLE` rows x columns: a row with ``below`` of its ``k`` sampled
    columns closer than a threshold ``c`` needs about ``k / below`` columns before the loop breaks (at most ``m``),
    and about ``ln(n)`` rows (the running maximum's records) scan all ``m``. Two
    thresholds, and the larger prediction is returned:

    * ``c`` = the largest sampled row minimum over the sampled columns (the loop's running maximum on clouds whose
      nearest neighbours are typical points); rows with none below (the record row) are left out;
    * ``c`` = an extreme-value estimate of the answer from the sampled rows' minima over all of ``B``
      (``mean + std * sqrt(2 ln n)``, at least their maximum; float64 products, 16 x m x d): on overlapping clouds
      (near-duplicates) each row's one close neighbour is rarely among the sampled columns, and only this threshold
      sees that the loop scans about ``m / 2`` columns per row; a row with none below counts ``2k``.

    Cheap next to either path; it only chooses a path, never the value.
    """
    n, m = A.shape[0], B.shape[0]
    gen = np.random.default_rng(n * 7919 + m)
    rows = gen.choice(n, min(n, BREAK_SAMPLE[0]), replace=False)
    cols = gen.choice(m, min(m, BREAK_SAMPLE[1]), replace=False)
    X = A[rows]
    D = cdist(X, B[cols])
    k = cols.shape[0]

    def per_row(c: float, zero: float | None) -> float:
        below = (c > D).sum(axis=1)
        if zero is None:  # rows with none below: the record row itself; left out
            below = below[below > 0]
            return float(np.minimum(m, k / below).mean()) if below.size else float(m)
        return float(np.where(below > 0, np.minimum(m, k / np.maximum(below, 1)), zero).mean())

    first = per_row(float(D.min(axis=1).max()), None)
    # torch's product, in torch's thread pool (the one the other metrics use): numpy's BLAS would wake its own
    # threads against torch's spinning ones, ~10 ms on 2 cores -- more than scipy's whole loop on 6 000 x 1 000
    cross = (torch.from_numpy(X) @ torch.from_numpy(B).T).numpy()
    sq = np.einsum("ij,ij->i", X, X)[:, None] + np.einsum("ij,ij->i", B, B)[None, :] - 2.0 * cross
    minima = np.sqrt(np.maximum(sq.min(axis=1), 0.0))
    c = max(float(minima.max()), float(minima.mean() + minima.std() * math.sqrt(2.0 * math.log(max(n, 2)))))
    second = per_row(c, float(min(m, 2 * k)))
    return max(first, second) + math.log(n) * m / n


def prefers_scipy(A: np.ndarray, B: np.ndarray) -> bool:
    """Whether scipy's early-break loop is predicted faster than the bounded expansion for ``A -> B``:
    ``W * d <= BREAK_WORK`` or ``W * BREAK_RATIO <= m``, with ``W`` = :func:`break_columns`."""
    w = break_columns(A, B)
    return w * A.shape[1] <= BREAK_WORK or w * BREAK_RATIO <= B.shape[0]


def scipy_directed(A: np.ndarray, B: np.ndarray) -> float:
    """Squared directed Hausdorff distance by scipy's early-break loop (exact: the direct distance of one pair)."""
    return directed_hausdorff(A, B)[0] ** 2
