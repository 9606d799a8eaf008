"""Hausdorff kernels: exact row minima from the bounded expansion, the early exit over column blocks, and the direct
early break that runs first on a CPU and hands the expansion the rows it leaves open (see
:func:`experiments.metrics.distances.hausdorff`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial.distance import cdist

from experiments.metrics._kernels.blocks import steps, to_tensor
from experiments.metrics._kernels.bounds import U64
from experiments.metrics._kernels.expansion import Pair, direct_sq, expansion

__all__ = [
    "DIRECT_FIRST",
    "DIRECT_RATIO",
    "DIRECT_SEEDS",
    "DIRECT_WORK",
    "FIRST_WIDTH",
    "SEED_ROWS",
    "Coefficients",
    "Directed",
    "chunk_bounds",
    "direct_budget",
    "direct_pass",
    "directed",
    "hausdorff_brute_force",
    "hausdorff_cdist",
    "resolve_rows",
    "retire",
    "seed_rows",
]

SEED_ROWS = 32  # rows resolved exactly before the early-exit pass, to get a good first lower bound
FIRST_WIDTH = 32  # columns in the first early-exit round; doubles every round

#: The direct early-break pass (:func:`direct_pass`, the default CPU path of each direction): columns per row in its
#: first round (doubling every round) and rows it resolves in full after that round.
DIRECT_FIRST: int = 4
DIRECT_SEEDS: int = 4

#: Its budget (:func:`direct_budget`): at most ``max(n m / DIRECT_RATIO, n DIRECT_WORK / d)`` direct distances, then
#: the open rows go to the bounded expansion, which works through all ``m`` columns of a row in matrix products,
#: about ``DIRECT_RATIO`` times faster per column than a direct distance. Measured on 2 cores (BENCHMARKS.md,
#: "Exact metrics, fast"): post-ReLU embeddings finish within the budget both ways (5-30 columns per row), near-duplicate
#: and L2-normalised high-dimensional clouds exhaust it in the first rounds.
DIRECT_WORK: float = 4096.0
DIRECT_RATIO: float = 30.0


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


def directed(
    pair: Pair, st: Directed, coeffs: Coefficients, block_size: int, early_exit: bool, rows: torch.Tensor | None = None
) -> None:
    """Update ``st`` with the directed Hausdorff distance from ``pair.a`` to ``pair.b`` (squared, exact). ``rows``:
    the only rows of ``pair.a`` that can still matter (the others are known to be within ``st.best`` of ``pair.b``,
    e.g. by :func:`direct_pass`, which also seeded ``st.best``); default all."""
    n, m = pair.a.c.shape[0], pair.b.c.shape[0]
    if rows is not None:
        rows = rows.to(pair.device)
    else:
        rows = torch.arange(n, device=pair.device)
        if early_exit:
            seeds = seed_rows(pair, True, SEED_ROWS)
            resolve_rows(pair, seeds, st, coeffs, block_size)
            mask = torch.ones(n, dtype=torch.bool, device=pair.device)
            mask[seeds] = False
            rows = rows[mask]
    if early_exit:
        gen = torch.Generator().manual_seed(m)
        order = torch.randperm(m, generator=gen).to(pair.device)
        rows = retire(pair, rows, st, coeffs, block_size, order)
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


def direct_pass(A: np.ndarray, B: np.ndarray, best: float, budget: float) -> tuple[float, np.ndarray]:
    """Early break with direct float64 distances (the loop of scipy's :func:`~scipy.spatial.distance.directed_hausdorff`,
    vectorised over rows): ``(best, open_rows)``.

    ``best`` is a proven lower bound of the squared answer (an exact squared row minimum, of either direction). The
    columns of ``B`` are visited in a fixed random order, :data:`DIRECT_FIRST` columns in the first round and twice as
    many in each next one; every row keeps its running minimum ``r_i`` (``cdist``'s ``sqeuclidean``: direct, exact).
    After the first round the :data:`DIRECT_SEEDS` rows with the largest ``r_i`` are resolved over all of ``B``
    (their exact minima raise ``best`` to about the answer). A row with ``r_i <= best`` is dropped: its true minimum
    is at most ``r_i``, so it cannot exceed the answer. The rows left after the last column have exact minima, and the
    largest of them updates ``best``; the returned ``open_rows`` is then empty. When the rows still open are predicted
    (from the last round's drop rate, :func:`_columns_to_drop`) to take the distances evaluated past ``budget``, the
    pass stops and returns them, for the expansion; so clouds where it cannot win (near-duplicates, L2-normalised
    high-dimensional clouds: a round drops almost nothing) cost it about ``n DIRECT_FIRST + DIRECT_SEEDS m``
    distances.
    """
    n, m = A.shape[0], B.shape[0]
    order = np.random.default_rng(m).permutation(m)
    width = min(m, DIRECT_FIRST)
    run = cdist(A, B[order[:width]], "sqeuclidean").min(axis=1)  # only the columns a round visits are gathered
    seeds = np.argpartition(run, n - min(DIRECT_SEEDS, n))[n - min(DIRECT_SEEDS, n) :]
    run[seeds] = cdist(A[seeds], B, "sqeuclidean").min(axis=1)
    best = max(best, float(run[seeds].max()))
    spent = n * width + seeds.size * m
    keep = run > best
    keep[seeds] = False
    active, pos, before = np.flatnonzero(keep), width, n - seeds.size
    while active.size:
        if pos == m:  # every column seen: these minima are exact
            return max(best, float(run[active].max())), active[:0]
        if spent + active.size * _columns_to_drop(before, active.size, width, m - pos) > budget:
            break
        width = min(2 * width, m - pos)
        spent += active.size * width
        run[active] = np.minimum(run[active], cdist(A[active], B[order[pos : pos + width]], "sqeuclidean").min(axis=1))
        pos, before = pos + width, active.size
        active = active[run[active] > best]
    return best, active


def _columns_to_drop(before: int, after: int, width: int, left: int) -> float:
    """Expected further columns per open row before it drops: ``1 / h`` with the per-column drop rate
    ``h = -ln(1 - f) / width`` of the last round (``f`` = the fraction of its ``before`` rows it dropped), at most
    the ``left`` columns not yet seen (a round that drops nothing predicts a full scan)."""
    fraction = 1.0 - after / before
    rate = -math.log1p(-fraction) / width if fraction < 1.0 else math.inf
    return left if rate * left <= 1.0 else 1.0 / rate


def direct_budget(n: int, m: int, d: int) -> float:
    """Distances :func:`direct_pass` may evaluate for ``n`` rows against ``m`` columns in ``d`` dimensions before it
    hands the open rows to the expansion: ``max(n m / DIRECT_RATIO, n DIRECT_WORK / d)``."""
    return max(n * m / DIRECT_RATIO, n * DIRECT_WORK / d)
