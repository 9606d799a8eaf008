r"""The summed-distance kernel: expansion blocks kept under a per-block error budget, the rest direct.

Per block of rows with ``N`` entries, ``d~ = sqrt(max(S~, 0))`` and the per-entry bound ``E`` of :mod:`.bounds`
(scaled units). An entry with ``S~ >= E`` is off by at most

.. math::  \mathrm{err} = E / (\tilde d + \sqrt{\tilde S - E}) \quad (\ge |\tilde d - d|),

the budget is ``SUM_RTOL * (sum d~ - N sqrt(E_max))`` (``SUM_RTOL`` times a proven lower bound of the block's true
sum, as ``|sqrt(x) - sqrt(y)| <= sqrt(|x - y|)``), and the entries kept from the expansion have errors summing to at
most the budget: all of them when the cheap per-row test passes (``m * err(row minimum)``, with ``E`` from the
row's norm and the largest column norm), else the entries with ``err <= tau`` for the largest ``tau`` of
``budget * 16**-k`` (down to ``budget / N``, which always works) whose kept errors fit, per entry ``E`` from both
norms. The others are recomputed by the direct float64 formula; when they are more than
:data:`~.expansion.DIRECT_BLOCK_FRACTION` of the block, the whole block is (``cdist``).
"""

from __future__ import annotations

import math

import torch

from experiments.metrics._kernels.expansion import DIRECT_BLOCK_FRACTION, Pair, direct_rows, direct_sq, expansion

__all__ = ["PROBE_ROWS", "SUM_RTOL", "block_sum", "summed_distance"]

#: Bound on the relative error of the summed distance (versus summing the direct float64 distances).
SUM_RTOL: float = 2.0**-42

#: Rows of the first (probe) block: when even it needs the direct formula for most entries, every block does.
PROBE_ROWS: int = 64


def _kept_errors(D: torch.Tensor, S: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
    """Per-entry error bound ``E / (d~ + sqrt(S~ - E))`` where ``S~ >= E``, ``inf`` elsewhere (in ``E``'s memory)."""
    root = (S - E).clamp_(min=0.0).sqrt_()
    invalid = S < E
    E.div_(root.add_(D))
    E.masked_fill_(invalid, math.inf)
    return E


def block_sum(pair: Pair, chunk: torch.Tensor, K: float, eps_abs: float, block_size: int) -> tuple[float, float, int]:
    """``(scaled sum of kept entries, unscaled sum of direct entries, number of direct entries)`` of one block, or
    ``(0, direct sum of the whole block, -N)`` when the block was computed directly."""
    a, b = pair.a, pair.b
    S = expansion(pair, chunk, None, low=False).clamp_(min=0.0)
    D = S.sqrt()
    total = float(D.sum())
    N = D.numel()
    e_row = (a.norm[chunk] + b.norm.max()).square_().mul_(K).add_(eps_abs)  # >= every E_ij of the row
    budget = SUM_RTOL * (total - N * math.sqrt(float(e_row.max())))
    if budget <= 0.0:  # all points (nearly) coincide: no useful bound
        return 0.0, float(direct_rows(a.x, b.x, chunk).sum()), -N
    d_min = D.amin(dim=1)
    root = (d_min.square() - e_row).clamp_(min=0.0).sqrt_()
    if bool((d_min.square() >= e_row).all()) and float((e_row / (d_min + root)).sum()) * D.shape[1] <= budget:
        return total, 0.0, 0
    E = (a.norm[chunk, None] + b.norm[None, :]).square_().mul_(K).add_(eps_abs)
    err = _kept_errors(D, S, E)
    del S
    tau, floor = budget, budget / N
    while True:
        kept = err <= tau
        if tau <= floor or float(torch.where(kept, err, 0.0).sum()) <= budget:
            break
        tau = max(floor, tau / 16.0)
    bad = ~kept
    n_bad = int(bad.sum())
    if n_bad > DIRECT_BLOCK_FRACTION * N:
        return 0.0, float(direct_rows(a.x, b.x, chunk).sum()), -N
    if n_bad == 0:
        return total, 0.0, 0
    r, c = bad.nonzero(as_tuple=True)
    total -= float(D[r, c].sum())
    return total, float(direct_sq(a.x, b.x, chunk[r], c, block_size).sqrt_().sum()), n_bad


def summed_distance(pair: Pair, K: float, eps_abs: float, block_size: int) -> tuple[float, int, bool]:
    """``(sum of all distances, entries recomputed directly, whether the direct path was taken up front)``.

    The first block is a probe of :data:`PROBE_ROWS` rows: when it had to be computed directly (the bound cannot
    succeed on these clouds), every further block goes straight to the direct formula without an expansion.
    """
    n, m = pair.a.c.shape[0], pair.b.c.shape[0]
    rows = torch.arange(n, device=pair.device)
    step = max(1, block_size // m)
    probe = min(n, PROBE_ROWS, step)
    chunks = [rows[:probe], *rows[probe:].split(step)] if probe < n else [rows]
    scaled, direct, n_direct, go_direct = 0.0, 0.0, 0, False
    for chunk in chunks:
        if go_direct:
            direct += float(direct_rows(pair.a.x, pair.b.x, chunk).sum())
            n_direct += chunk.shape[0] * m
            continue
        kept, exact, count = block_sum(pair, chunk, K, eps_abs, block_size)
        scaled += kept
        direct += exact
        n_direct += abs(count)
        go_direct = count < 0 and chunk is chunks[0]
    return scaled / pair.s + direct, n_direct, go_direct  # dividing by a power of two is exact
