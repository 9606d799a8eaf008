"""Exact metrics on large-norm, embedding-like clouds (issue #23) and the explicit device argument (issue #22):
values against scipy, the paths the guards pick (the direct early break against a brute force), and no CUDA path unless a CUDA device is passed."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist, directed_hausdorff

import experiments.metrics._kernels.expansion as expansion
import experiments.metrics._kernels.nearest as nearest
import experiments.metrics._kernels.summed as summed
import experiments.metrics.cross_barcode as cross_barcode
import experiments.metrics.ripserpp as ripserpp
from experiments.metrics import euclidean, euclidean_mean, hausdorff, mtopdiv
from experiments.metrics._kernels.bounds import error_coefficient
from experiments.metrics.batched import euclidean_batch, hausdorff_batch, mtopdiv_batch, score_resamples
from experiments.metrics.distances import pairwise_distances

RTOL = 1e-12


def scipy_hausdorff(P: np.ndarray, Q: np.ndarray) -> float:
    return max(directed_hausdorff(P, Q)[0], directed_hausdorff(Q, P)[0])


def post_relu_clouds(n: int, m: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative clouds with norms ~110 (heavy upper tail), anisotropic, in a narrow cone."""
    rng = np.random.default_rng(seed)
    base = np.abs(rng.standard_normal(dim)) + 0.2
    spectrum = np.arange(1, dim + 1, dtype=float) ** -0.7
    out = []
    for size in (n, m):
        centre = base * np.exp(0.3 * rng.standard_normal(dim))
        centre *= 110.0 / np.linalg.norm(centre)
        z = rng.standard_normal((size, dim)) * spectrum
        z *= 16.0 / np.sqrt((z**2).sum(axis=1).mean())
        out.append(np.maximum(np.exp(0.15 * rng.standard_t(5.0, (size, 1))) * (centre + z), 0.0))
    return out[0], out[1]


@pytest.mark.parametrize("dim", [64, 512])
def test_large_norm_clouds_equal_scipy(dim):
    P, Q = post_relu_clouds(1200, 300, dim, seed=dim)
    assert np.median(np.linalg.norm(P, axis=1)) > 90 and (P >= 0).all()
    C = cdist(P, Q)
    for device in (None, "cpu"):
        assert hausdorff(P, Q, device=device) == pytest.approx(scipy_hausdorff(P, Q), rel=RTOL, abs=0)
        assert euclidean(P, Q, device=device) == pytest.approx(C.sum(), rel=RTOL, abs=0)
        assert euclidean_mean(P, Q, device=device) == pytest.approx(C.mean(), rel=RTOL, abs=0)
        np.testing.assert_allclose(pairwise_distances(P, Q, device=device), C, rtol=RTOL, atol=0)


def test_large_norm_sum_keeps_the_expansion():
    """512-d large-norm clouds: a uniform per-entry test (the row's norm plus the largest column norm, each entry
    its equal share of the 2**-42 budget) rejects nearly every entry; the per-block budget keeps nearly all."""
    P, Q = post_relu_clouds(1500, 400, 512, seed=3)
    pair = expansion.prepare(P, Q, torch.device("cpu"), low=False)
    K, eps_abs = error_coefficient(512, False, vs_direct=False)
    total, n_direct, up_front = summed.summed_distance(pair, K, eps_abs, 2**22)
    assert total == pytest.approx(cdist(P, Q).sum(), rel=RTOL, abs=0)
    assert not up_front and n_direct <= 0.01 * P.shape[0] * Q.shape[0]
    # the old uniform per-entry criterion on the same estimate
    S = expansion.expansion(pair, torch.arange(P.shape[0]), None, low=False).clamp_(min=0.0)
    D = S.sqrt()
    E = (pair.a.norm + pair.b.norm.max()).square() * K + eps_abs
    t = summed.SUM_RTOL * float(D.mean())
    assert float(((E + (E / (2 * t)) ** 2).sqrt()[:, None] > D).float().mean()) > 0.5


def test_direct_path_up_front_when_the_bound_cannot_succeed():
    """Two tight clusters far apart in both clouds: half the entries are ~0 against norms ~1e3, so the probe block
    goes direct and so does every other block; the value is still cdist's sum."""
    rng = np.random.default_rng(1)
    centres = np.array([[1e3] * 8, [-1e3] * 8])
    P = centres[rng.integers(0, 2, 600)] + 1e-9 * rng.standard_normal((600, 8))
    Q = centres[rng.integers(0, 2, 300)] + 1e-9 * rng.standard_normal((300, 8))
    pair = expansion.prepare(P, Q, torch.device("cpu"), low=False)
    K, eps_abs = error_coefficient(8, False, vs_direct=False)
    total, n_direct, up_front = summed.summed_distance(pair, K, eps_abs, 2**22)
    assert up_front and n_direct == P.shape[0] * Q.shape[0]
    assert total == pytest.approx(cdist(P, Q).sum(), rel=RTOL, abs=0)
    assert euclidean(P, Q, block_size=4096) == pytest.approx(cdist(P, Q).sum(), rel=RTOL, abs=0)


@pytest.mark.parametrize("budget", [0.0, 2_000.0, math.inf])
@pytest.mark.parametrize("kind", ["post_relu", "gaussian", "near_duplicates", "ties"])
def test_direct_pass_keeps_every_row_that_can_matter(kind, budget):
    """Against a brute-force ``cdist``: the returned ``best`` is one row's exact squared minimum, every row whose
    minimum exceeds it is among the open rows, and with no open row it is the directed answer."""
    rng = np.random.default_rng(len(kind))
    if kind == "post_relu":
        A, B = post_relu_clouds(700, 300, 64, seed=4)
    elif kind == "gaussian":
        A, B = rng.standard_normal((500, 16)), rng.standard_normal((400, 16))
    elif kind == "near_duplicates":
        A = rng.standard_normal((400, 32))
        B = A[rng.permutation(400)] + 1e-3 * rng.standard_normal((400, 32))
    else:  # many equal distances: integer points
        A, B = rng.integers(0, 3, (300, 4)).astype(float), rng.integers(0, 3, (200, 4)).astype(float)
    minima = cdist(A, B, "sqeuclidean").min(axis=1)
    for start in (0.0, float(np.median(minima))):
        best, rows = nearest.direct_pass(A, B, start, budget)
        assert best >= start and (best == start or best in minima)
        assert set(np.flatnonzero(minima > best)) <= set(rows.tolist())
        if rows.size == 0:
            assert best == max(start, minima.max())
    if budget == math.inf:
        assert nearest.direct_pass(A, B, 0.0, budget)[1].size == 0


def test_hausdorff_direct_pass_finishes_large_norm_clouds_and_leaves_normalised_ones_to_the_expansion(monkeypatch):
    """Issue 23's clouds (post-ReLU, large norms, 64-d and 512-d): the direct early break finishes both directions
    within its budget and no expansion runs. L2-normalised 512-d Gaussians and near-duplicates: a round drops almost
    no row, so the pass stops after its first round and leaves (nearly) every row to the expansion. The value equals
    scipy's in every case, and an explicit device never takes the direct pass."""
    calls = []
    original = nearest.directed
    monkeypatch.setattr(nearest, "directed", lambda *a, **k: calls.append(a[0].a.c.shape) or original(*a, **k))
    for dim in (64, 512):
        P, Q = post_relu_clouds(3000, 600, dim, seed=11)
        for A, B in ((P, Q), (Q, P)):
            assert nearest.direct_pass(A, B, 0.0, nearest.direct_budget(A.shape[0], B.shape[0], dim))[1].size == 0
        assert hausdorff(P, Q) == pytest.approx(scipy_hausdorff(P, Q), rel=RTOL, abs=0)
        assert calls == []
        assert hausdorff(P, Q, device="cpu") == pytest.approx(scipy_hausdorff(P, Q), rel=RTOL, abs=0)
        assert len(calls) == 2
        calls.clear()
    rng = np.random.default_rng(2)
    G, H = rng.standard_normal((1000, 512)), rng.standard_normal((1000, 512))
    G, H = G / np.linalg.norm(G, axis=1, keepdims=True), H / np.linalg.norm(H, axis=1, keepdims=True)
    A = rng.standard_normal((1500, 64))
    B = A[rng.permutation(1500)] + 1e-3 * rng.standard_normal((1500, 64))
    for X, Y in ((G, H), (A, B)):
        budget = nearest.direct_budget(X.shape[0], Y.shape[0], X.shape[1])
        assert nearest.direct_pass(X, Y, 0.0, budget)[1].size >= 0.9 * X.shape[0]
        assert hausdorff(X, Y) == pytest.approx(scipy_hausdorff(X, Y), rel=RTOL, abs=0)
        assert len(calls) == 2
        calls.clear()


def test_bootstrap_sizes_on_large_norm_clouds():
    P, Q = post_relu_clouds(2000, 500, 64, seed=7)
    rng = np.random.default_rng(8)
    ri, ei = rng.integers(0, 2000, (30, 100)), rng.integers(0, 500, (30, 100))
    for strategy in ("gather", "direct"):
        np.testing.assert_allclose(
            hausdorff_batch(P, Q, ri, ei, strategy=strategy),
            [scipy_hausdorff(P[a], Q[b]) for a, b in zip(ri, ei, strict=True)],
            rtol=RTOL,
        )
        np.testing.assert_allclose(
            euclidean_batch(P, Q, ri, ei, strategy=strategy),
            [cdist(P[a], Q[b]).sum() for a, b in zip(ri, ei, strict=True)],
            rtol=RTOL,
        )


# --------------------------------------------------------------------------------------------- devices (#22)


def test_visible_cuda_is_not_chosen_without_a_cuda_device(monkeypatch):
    """With torch.cuda.is_available() forced true (and ripser++ importable), every metric and batched form with
    the default device runs on the CPU -- a CUDA path here would raise, as this machine's CUDA is fake."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "ripserplusplus", types.ModuleType("ripserplusplus"))
    monkeypatch.setattr(ripserpp, "unavailable_reason", lambda: None)  # the fake package counts as usable
    moved = []
    original_to = torch.Tensor.to

    def spy_to(self, *args, **kwargs):
        target = args[0] if args else kwargs.get("device")
        if isinstance(target, (str, torch.device)) and torch.device(target).type == "cuda":
            moved.append(target)
        return original_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", spy_to)
    P, Q = post_relu_clouds(1100, 1000, 16, seed=9)  # > 2**20 pairs: the old rule would have picked CUDA
    assert hausdorff(P, Q) == pytest.approx(scipy_hausdorff(P, Q), rel=RTOL)
    assert euclidean(P, Q) == pytest.approx(cdist(P, Q).sum(), rel=RTOL)
    np.testing.assert_allclose(pairwise_distances(P, Q), cdist(P, Q), rtol=RTOL)
    ri, ei = np.arange(1100).reshape(11, 100), np.arange(1000).reshape(10, 100)[np.arange(11) % 10]
    np.testing.assert_allclose(
        euclidean_batch(P, Q, ri, ei), [cdist(P[a], Q[b]).sum() for a, b in zip(ri, ei, strict=True)], rtol=RTOL
    )
    assert cross_barcode.resolve_backend("auto") == "giotto"
    assert cross_barcode.resolve_backend("auto", device="cpu") == "giotto"
    assert cross_barcode.resolve_backend("auto", device=torch.device("cuda")) == "ripserplusplus"
    assert cross_barcode.resolve_backend("auto", device="cuda:0") == "ripserplusplus"
    small_p, small_q = P[:12], Q[:9]
    assert mtopdiv(small_p, small_q) == mtopdiv(small_p, small_q, backend="giotto")
    r2, e2 = ri[:3, :10] % 12, ei[:3, :10] % 9
    np.testing.assert_array_equal(
        mtopdiv_batch(small_p, small_q, r2, e2), mtopdiv_batch(small_p, small_q, r2, e2, backend="giotto")
    )
    values = score_resamples(small_p, small_q, r2, e2, ["hausdorff", "euclidean", "mtopdiv"])
    assert np.isfinite(values).all()
    assert moved == []


def test_auto_falls_back_to_giotto_with_a_reason(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setitem(sys.modules, "ripserplusplus", types.ModuleType("ripserplusplus"))
    with caplog.at_level("INFO", logger="experiments.metrics.cross_barcode"):
        assert cross_barcode.resolve_backend("auto", device="cuda") == "giotto"
    assert "CUDA is not available" in caplog.text
    monkeypatch.setitem(sys.modules, "ripserplusplus", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    caplog.clear()
    with caplog.at_level("INFO", logger="experiments.metrics.cross_barcode"):
        assert cross_barcode.resolve_backend("auto", device="cuda") == "giotto"
    assert "ripserplusplus does not import" in caplog.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks that a CUDA path is really taken when asked for")
def test_an_explicit_cuda_device_takes_the_cuda_path():
    P, Q = post_relu_clouds(50, 40, 4)
    with pytest.raises((RuntimeError, AssertionError)):
        euclidean(P, Q, device="cuda")


def test_score_resamples_passes_the_device_down(monkeypatch):
    seen = []
    import experiments.metrics.batched as batched

    original = batched.resample_blocks
    monkeypatch.setattr(batched, "resample_blocks", lambda *a, **k: seen.append(a[5]) or original(*a, **k))
    P, Q = post_relu_clouds(60, 50, 4)
    ri, ei = np.arange(60).reshape(3, 20), np.arange(60).reshape(3, 20) % 50
    score_resamples(P, Q, ri, ei, ["hausdorff", "euclidean"], device="cpu")
    score_resamples(P, Q, ri, ei, ["hausdorff"], {"hausdorff": {"device": None}}, device="cpu")
    assert seen == ["cpu", None]
