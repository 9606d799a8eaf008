r"""Prepared clouds, the Gram expansion, direct float64 re-checks and the exact distance matrix.

A :class:`Pair` holds both clouds centred on the midpoint of their means and scaled by a power of two (max
``|coordinate|`` in ``[1/2, 1)``): distances are translation-invariant and the scaling is exact, so the expansion
``S~ = |a|^2 + |b|^2 - 2 a.b`` does not cancel catastrophically on clouds far from the origin, and the bound of
:mod:`.bounds` is in terms of the *centred* norms.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial.distance import cdist

from experiments.metrics._kernels.blocks import to_tensor
from experiments.metrics._kernels.bounds import error_coefficient

__all__ = [
    "CPU_DIRECT_CHUNK",
    "DIRECT_BLOCK_FRACTION",
    "ENTRY_RTOL",
    "Cloud",
    "OutOfRange",
    "Pair",
    "direct_rows",
    "direct_sq",
    "exact_distances",
    "expansion",
    "pairwise_tensor",
    "prepare",
    "swap",
]

#: Bound on the relative error of every entry of the exact distance matrix (versus the direct float64 formula).
ENTRY_RTOL: float = 2.0**-42

#: Pairs per chunk of a direct re-check on the CPU: gathering scattered pairs into small, cache-resident temporaries
#: is ~3x faster than one large gather (measured on the 2-core development machine).
CPU_DIRECT_CHUNK: int = 2**16

#: When more than this fraction of a block's entries needs the direct formula, the whole block is computed directly
#: (scipy's ``cdist`` on the CPU): a scattered pair costs ~5x a ``cdist`` entry (2 cores, 64-d; BENCHMARKS.md).
DIRECT_BLOCK_FRACTION: float = 0.2

MAX_EXPONENT = 480  # |log2(spread)| beyond which the scaled bound arithmetic could under/overflow: brute force


@dataclass
class Cloud:
    """One cloud on the device: original coordinates ``x``, centred and scaled ``c`` (and its float32 copy ``low``),
    squared norms ``sq`` and norms ``norm`` of ``c``."""

    x: torch.Tensor
    c: torch.Tensor
    low: torch.Tensor | None
    sq: torch.Tensor
    norm: torch.Tensor


@dataclass
class Pair:
    """Two prepared clouds and the scale: scaled squared distance = direct squared distance * ``s2``."""

    a: Cloud
    b: Cloud
    s: float
    s2: float
    device: torch.device
    low: bool


class OutOfRange(Exception):
    """The clouds' spread is too far from 1 for the scaled bound arithmetic; use the brute-force direct path."""


def prepare(P: np.ndarray, Q: np.ndarray, device: torch.device, low: bool) -> Pair:
    """Centre both clouds on the midpoint of their means and scale by a power of two (max |coordinate| in [1/2, 1))."""
    with np.errstate(over="ignore", invalid="ignore"):
        centre = 0.5 * P.mean(axis=0) + 0.5 * Q.mean(axis=0)
    if not np.isfinite(centre).all():
        raise OutOfRange
    t_centre = torch.from_numpy(centre).to(device)
    xp, xq = to_tensor(P, device), to_tensor(Q, device)
    cp, cq = xp - t_centre, xq - t_centre
    amax = max(max(-float(lo), float(hi)) for lo, hi in (torch.aminmax(cp), torch.aminmax(cq)))
    if not math.isfinite(amax):
        raise OutOfRange
    exponent = math.frexp(amax)[1] if amax > 0.0 else 0
    if abs(exponent) > MAX_EXPONENT:
        raise OutOfRange
    s = math.ldexp(1.0, -exponent)
    cp.mul_(s)
    cq.mul_(s)

    def cloud(x: torch.Tensor, c: torch.Tensor) -> Cloud:
        sq = torch.einsum("ij,ij->i", c, c)
        return Cloud(x=x, c=c, low=c.to(torch.float32) if low else None, sq=sq, norm=sq.sqrt())

    return Pair(cloud(xp, cp), cloud(xq, cq), s, s * s, device, low)


def swap(pair: Pair) -> Pair:
    """The same pair with the roles of the two clouds exchanged."""
    return Pair(pair.b, pair.a, pair.s, pair.s2, pair.device, pair.low)


def direct_sq(X: torch.Tensor, Y: torch.Tensor, ii: torch.Tensor, jj: torch.Tensor, block_size: int) -> torch.Tensor:
    """Squared distances ``sum_k (X[ii] - Y[jj])**2`` by the direct formula in float64, in chunks of pairs."""
    out = torch.empty(ii.shape[0], dtype=torch.float64, device=X.device)
    budget = block_size if X.device.type != "cpu" else min(block_size, CPU_DIRECT_CHUNK)
    step = max(1, budget // max(1, X.shape[1]))
    for start in range(0, ii.shape[0], step):
        diff = X[ii[start : start + step]] - Y[jj[start : start + step]]
        out[start : start + step] = torch.einsum("ij,ij->i", diff, diff)
    return out


def direct_rows(X: torch.Tensor, Y: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Distances ``|X[rows] - Y|`` by the direct float64 formula: scipy's ``cdist`` on the CPU (the very numbers
    scipy returns), ``torch.cdist`` without the matrix-product shortcut elsewhere."""
    if X.device.type == "cpu":
        return torch.from_numpy(cdist(X[rows].numpy(), Y.numpy()))
    return torch.cdist(X[rows], Y, compute_mode="donot_use_mm_for_euclid_dist")


def expansion(pair: Pair, rows: torch.Tensor, cols: torch.Tensor | None, low: bool) -> torch.Tensor:
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


def exact_distances(
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


def pairwise_tensor(P: np.ndarray, Q: np.ndarray, block_size: int, device: torch.device) -> torch.Tensor:
    """Exact distance matrix ``(n, m)`` as a float64 tensor on ``device``, every entry within :data:`ENTRY_RTOL`
    of the direct formula; a block where more than :data:`DIRECT_BLOCK_FRACTION` of the entries fail the bound is
    computed directly instead (see :func:`experiments.metrics.distances.pairwise_distances`)."""
    n, m = P.shape[0], Q.shape[0]
    try:
        pair = prepare(P, Q, device, low=False)
    except OutOfRange:
        X, Y = to_tensor(P, device), to_tensor(Q, device)
        out = torch.empty((n, m), dtype=torch.float64, device=device)
        step = max(1, block_size // (m * P.shape[1]))
        for start in range(0, n, step):
            diff = X[start : start + step, None, :] - Y[None, :, :]
            out[start : start + step] = diff.square_().sum(dim=2).sqrt_()
        return out
    a, b = pair.a, pair.b
    K, eps_abs = error_coefficient(P.shape[1], False, vs_direct=False)
    out = torch.empty((n, m), dtype=torch.float64, device=device)
    step = max(1, block_size // m)
    for chunk in torch.arange(n, device=device).split(step):
        block = out[chunk[0] : chunk[-1] + 1]
        S = expansion(pair, chunk, None, low=False)
        thr = (a.norm[chunk, None] + b.norm[None, :]).square_().mul_(K).add_(eps_abs).mul_(1.0 + 0.5 / ENTRY_RTOL)
        bad = thr > S
        del thr
        n_bad = int(bad.sum())
        if n_bad > DIRECT_BLOCK_FRACTION * bad.numel():
            block.copy_(direct_rows(a.x, b.x, chunk).mul_(pair.s))
            continue
        S.clamp_(min=0.0).sqrt_()
        if n_bad:
            r, c = bad.nonzero(as_tuple=True)
            S[r, c] = direct_sq(a.x, b.x, chunk[r], c, block_size).sqrt_().mul_(pair.s)
        block.copy_(S)
    return out.div_(pair.s)
