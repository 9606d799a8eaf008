"""Distance blocks of many bootstrap resamples: gathered from one shared exact matrix, or computed per resample
(batched matrix products with the same bound), by a cost model (see :mod:`experiments.metrics.batched`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch

from experiments.metrics._kernels.blocks import DeviceLike, resolve_device, to_tensor
from experiments.metrics._kernels.bounds import error_coefficient
from experiments.metrics._kernels.expansion import OutOfRange, direct_sq, exact_distances, pairwise_tensor, prepare

__all__ = ["CACHE_BYTES", "CPU_COMPUTE_NS", "CPU_GATHER_NS", "gather_pays", "resample_blocks"]

logger = logging.getLogger("experiments.metrics.batched")

# Cost model of strategy="auto" on a CPU, ns per distance entry, measured on the 2-core development machine
# (BENCHMARKS.md): computing an entry costs about 6 + 0.04 d; gathering one from a matrix that fits in cache (<= 8 MiB)
# about 5, from a larger one about 30 (cache misses) -- so for 64-d embeddings and a 5 000-point reference the
# per-resample batched products win, for high d or a small matrix the gather does.
CPU_COMPUTE_NS = (6.0, 0.04)
CPU_GATHER_NS = {True: 5.0, False: 30.0}
CACHE_BYTES = 2**23


def gather_pays(full: int, total: int, dim: int, device: torch.device, max_matrix_entries: int) -> bool:
    """strategy="auto": precompute the shared matrix (``full`` entries) and gather ``total`` entries from it?"""
    if full > max_matrix_entries or full > total:
        return False
    if device.type != "cpu":  # GPU gathers run at memory bandwidth
        return True
    compute = CPU_COMPUTE_NS[0] + CPU_COMPUTE_NS[1] * dim
    gather = CPU_GATHER_NS[full * 8 <= CACHE_BYTES]
    return full * compute + total * gather < total * compute


def resample_blocks(
    P: np.ndarray,
    Q: np.ndarray,
    ri: np.ndarray,
    ei: np.ndarray,
    block_size: int,
    device: DeviceLike,
    max_matrix_entries: int,
    strategy: str = "auto",
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start, D)``: exact distances ``D[r - start] = d(P[ri[r]], Q[ei[r]])``, shape ``(b, s_ref, s_eval)``,
    float64, for consecutive chunks of resamples, at most ``block_size`` entries per chunk (at least one resample)."""
    n_res, s_ref = ri.shape
    s_eval = ei.shape[1]
    u_ref, inv_ref = np.unique(ri, return_inverse=True)
    u_eval, inv_eval = np.unique(ei, return_inverse=True)
    full = len(u_ref) * len(u_eval)
    dev = resolve_device(device)
    if strategy == "gather" or (
        strategy == "auto" and gather_pays(full, n_res * s_ref * s_eval, P.shape[1], dev, max_matrix_entries)
    ):
        D = pairwise_tensor(P[u_ref], Q[u_eval], block_size, dev)
        inv_r = torch.from_numpy(inv_ref.reshape(ri.shape)).to(dev)
        inv_e = torch.from_numpy(inv_eval.reshape(ei.shape)).to(dev)
        step = max(1, block_size // (s_ref * s_eval))
        logger.debug("resample blocks: gathered from a %d x %d matrix, %d resamples", len(u_ref), len(u_eval), n_res)
        for start in range(0, n_res, step):
            yield start, D[inv_r[start : start + step, :, None], inv_e[start : start + step, None, :]]
        return
    logger.debug("resample blocks: computed per resample (%d resamples, %d x %d)", n_res, s_ref, s_eval)
    ri_t, ei_t = torch.from_numpy(ri).to(dev), torch.from_numpy(ei).to(dev)
    dim = P.shape[1]
    step = max(1, block_size // (s_ref * s_eval + (s_ref + s_eval) * dim))
    try:
        pair = prepare(P, Q, dev, low=False)
    except OutOfRange:
        X, Y = to_tensor(P, dev), to_tensor(Q, dev)
        step = max(1, block_size // (s_ref * s_eval * dim))
        for start in range(0, n_res, step):
            diff = X[ri_t[start : start + step]][:, :, None, :] - Y[ei_t[start : start + step]][:, None, :, :]
            yield start, diff.square_().sum(dim=3).sqrt_()
        return
    a, b = pair.a, pair.b
    K, eps_abs = error_coefficient(dim, False, vs_direct=False)
    for start in range(0, n_res, step):
        r, e = ri_t[start : start + step], ei_t[start : start + step]
        S = torch.bmm(a.c[r], b.c[e].transpose(1, 2)).mul_(-2.0)
        S.add_(a.sq[r][:, :, None]).add_(b.sq[e][:, None, :])

        def direct(idx: tuple[torch.Tensor, ...], r: torch.Tensor = r, e: torch.Tensor = e) -> torch.Tensor:
            k, i, j = idx
            return direct_sq(a.x, b.x, r[k, i], e[k, j], block_size).sqrt_().mul_(pair.s)

        D = exact_distances(S, a.norm[r][:, :, None], b.norm[e][:, None, :], K, eps_abs, direct)
        yield start, D.div_(pair.s)
