"""Exactness of the fast metrics: blocked torch matrix products with error bounds and direct re-checks
(experiments.metrics.distances), the batched resample metrics (experiments.metrics.batched) and the batched
bootstrap tasks (sweeper.bootstrap) -- each against scipy or the per-resample functions, on adversarial clouds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import cdist, directed_hausdorff

import experiments.metrics._kernels.bounds as bounds
import experiments.metrics._kernels.expansion as expansion
import experiments.metrics._kernels.nearest as nearest
import experiments.metrics.distances as distances
from experiments.metrics import METRICS, chamfer, mtopdiv
from experiments.metrics.batched import (
    BATCHED_METRICS,
    chamfer_batch,
    euclidean_batch,
    hausdorff_batch,
    mtopdiv_batch,
    reference_distance_matrix,
    score_resamples,
)
from experiments.metrics.distances import euclidean, hausdorff, pairwise_distances
from experiments.metrics.mmd_resampled import mmd_resampled

RTOL = 1e-12  # the contract: scipy to 1e-12 relative on float64 input


def scipy_hausdorff(P: np.ndarray, Q: np.ndarray) -> float:
    return max(directed_hausdorff(P, Q)[0], directed_hausdorff(Q, P)[0])


def _unit(X: np.ndarray) -> np.ndarray:
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def adversarial_case(name: str, n: int = 300, m: int = 260, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Clouds that break a naive Gram-expansion or float32 implementation (n * m >= 2**16: the float32 filter and
    the early exit are on)."""
    rng = np.random.default_rng(seed)
    P, Q = rng.standard_normal((n, dim)), rng.standard_normal((m, dim))
    if name == "gaussian":
        return P, Q
    if name == "unit":
        return _unit(P), _unit(Q)
    if name == "offset_1e6_small_noise":  # catastrophic cancellation in |p|^2 + |q|^2 - 2 p.q without centring
        return 1e6 + 1e-3 * P, 1e6 + 1e-3 * Q
    if name == "offset_far_apart":
        return 1e6 + P, -3e5 + Q
    if name == "duplicates":  # every point of Q is a point of P: many exact zero distances
        return P, P[rng.integers(0, n, m)]
    if name == "near_duplicates":  # nearest neighbours far below the float32 error bound
        return P, P[rng.integers(0, n, m)] + 1e-9 * rng.standard_normal((m, dim))
    if name == "lattice_ties":  # massive exact ties of the nearest-neighbour distance
        return rng.integers(0, 3, (n, dim)).astype(float), rng.integers(0, 3, (m, dim)).astype(float)
    if name == "lattice_ties_offset":
        return rng.integers(0, 3, (n, dim)) + 1e7, rng.integers(0, 3, (m, dim)) + 1e7
    if name == "near_ties":  # two candidates per row within 1e-12 of each other
        base = rng.standard_normal((n, dim))
        return base, np.vstack([base[: m // 2] + 1e-3, base[: m - m // 2] + 1e-3 + 1e-13])
    if name == "one_outlier":  # the answer is a single row; everything else retires early
        return P, np.vstack([P[: m - 1], np.full((1, dim), 50.0)])
    if name == "anisotropic":
        scale = np.logspace(-8, 8, dim)
        return P * scale, Q * scale
    if name == "tiny_scale":
        return 1e-150 * P, 1e-150 * Q
    if name == "huge_scale":
        return 1e140 * P, 1e140 * Q
    if name == "one_point":
        return P[:1], Q
    raise KeyError(name)


CASES = [
    "gaussian",
    "unit",
    "offset_1e6_small_noise",
    "offset_far_apart",
    "duplicates",
    "near_duplicates",
    "lattice_ties",
    "lattice_ties_offset",
    "near_ties",
    "one_outlier",
    "anisotropic",
    "tiny_scale",
    "huge_scale",
    "one_point",
]


# --------------------------------------------------------------------------------------------- hausdorff / euclidean


@pytest.mark.parametrize("dim", [1, 16, 130])
@pytest.mark.parametrize("case", CASES)
def test_torch_path_matches_scipy_on_adversarial_clouds(case, dim):
    P, Q = adversarial_case(case, dim=dim, seed=dim)
    expected_h = scipy_hausdorff(P, Q)
    C = cdist(P, Q)
    for block_size in (distances.DEFAULT_BLOCK_SIZE, 97):
        kw = dict(block_size=block_size, device="cpu")
        assert hausdorff(P, Q, **kw) == pytest.approx(expected_h, rel=RTOL, abs=0)
        assert hausdorff(Q, P, **kw) == pytest.approx(expected_h, rel=RTOL, abs=0)
        assert euclidean(P, Q, **kw) == pytest.approx(C.sum(), rel=RTOL, abs=0)
        D = pairwise_distances(P, Q, **kw)
        np.testing.assert_allclose(D, C, rtol=RTOL, atol=0)
        np.testing.assert_array_equal(D == 0, C == 0)


@pytest.mark.parametrize("case", ["gaussian", "offset_1e6_small_noise", "near_duplicates", "one_outlier"])
def test_one_entry_blocks(case):
    """block_size=1: one row per block, one pair per direct re-check -- still exact."""
    P, Q = adversarial_case(case, n=260, m=256, dim=3)
    assert hausdorff(P, Q, block_size=1, device="cpu") == pytest.approx(scipy_hausdorff(P, Q), rel=RTOL, abs=0)
    assert euclidean(P, Q, block_size=1, device="cpu") == pytest.approx(cdist(P, Q).sum(), rel=RTOL, abs=0)
    np.testing.assert_allclose(pairwise_distances(P, Q, block_size=1, device="cpu"), cdist(P, Q), rtol=RTOL)


@pytest.mark.parametrize("case", ["gaussian", "duplicates", "offset_1e6_small_noise", "lattice_ties"])
def test_hausdorff_is_a_direct_distance_of_one_pair(case):
    """The result is the direct float64 distance of the pair that realises the maximum: scipy's value up to the
    summation order of one length-d sum, far inside the 2**-42 bound."""
    P, Q = adversarial_case(case, dim=64)
    assert hausdorff(P, Q, device="cpu") == pytest.approx(scipy_hausdorff(P, Q), rel=64 * 2**-52, abs=0)


def test_identical_clouds_give_exact_zero():
    P, _ = adversarial_case("gaussian")
    assert hausdorff(P, P, device="cpu") == 0.0
    assert hausdorff(P, P[::-1].copy(), device="cpu") == 0.0
    np.testing.assert_array_equal(np.diag(pairwise_distances(P, P, device="cpu")), 0.0)


def test_small_problems_use_cdist_exactly():
    rng = np.random.default_rng(3)
    P, Q = rng.standard_normal((20, 5)), rng.standard_normal((30, 5))
    assert hausdorff(P, Q) == scipy_hausdorff(P, Q)
    assert euclidean(P, Q) == pytest.approx(cdist(P, Q).sum(), rel=1e-15)
    np.testing.assert_array_equal(pairwise_distances(P, Q), cdist(P, Q))


def test_float32_filter_and_early_exit_are_used_and_exact(monkeypatch):
    P, Q = adversarial_case("unit", n=400, m=400, dim=32)
    calls = {"retire": 0}
    original = nearest.retire

    def spy(*args, **kwargs):
        calls["retire"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(nearest, "retire", spy)
    assert hausdorff(P, Q, device="cpu") == pytest.approx(scipy_hausdorff(P, Q), rel=RTOL)
    assert calls["retire"] == 2  # one early-exit pass per direction


def test_reduced_float32_matmul_precision_falls_back_to_float64():
    P, Q = adversarial_case("near_ties", dim=24)
    previous = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        assert not bounds.float32_matmul_is_ieee(torch.device("cpu"))
        assert hausdorff(P, Q, device="cpu") == pytest.approx(scipy_hausdorff(P, Q), rel=RTOL)
    finally:
        torch.set_float32_matmul_precision(previous)
    assert bounds.float32_matmul_is_ieee(torch.device("cpu"))


def test_out_of_range_spread_uses_the_direct_formula():
    rng = np.random.default_rng(5)
    P, Q = 1e-200 * rng.standard_normal((300, 3)), 1e-200 * rng.standard_normal((250, 3))
    assert hausdorff(P, Q, device="cpu") == pytest.approx(scipy_hausdorff(P, Q), rel=RTOL)
    assert euclidean(P, Q, device="cpu") == pytest.approx(cdist(P, Q).sum(), rel=RTOL)
    np.testing.assert_allclose(pairwise_distances(P, Q, device="cpu"), cdist(P, Q), rtol=RTOL)


def test_error_bound_covers_the_worst_case_entries():
    """The bound K (|a| + |b|)^2 must dominate the observed expansion error on every entry."""
    for dim, low in ((1, False), (64, False), (64, True), (512, True)):
        P, Q = adversarial_case("near_duplicates", n=200, m=200, dim=dim)
        pair = expansion.prepare(P, Q, torch.device("cpu"), low)
        K, eps_abs = bounds.error_coefficient(dim, low, vs_direct=True)
        S = expansion.expansion(pair, torch.arange(200), None, low).numpy()
        exact = cdist(P, Q, "sqeuclidean") * pair.s2
        bound = K * (pair.a.norm.numpy()[:, None] + pair.b.norm.numpy()[None, :]) ** 2 + eps_abs
        assert (np.abs(S - exact) <= bound).all()


@settings(max_examples=100, deadline=None)
@given(
    data=arrays(
        np.float64,
        st.tuples(st.integers(1, 40), st.integers(1, 4)),
        elements=st.one_of(
            st.sampled_from([0.0, 1.0, -1.0, 1e6, 1e6 + 1e-4]),
            st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
        ),
    ),
    split=st.integers(1, 39),
)
def test_property_equal_to_scipy(data, split):
    split = min(split, len(data) - 1) if len(data) > 1 else 0
    P, Q = (data[:split], data[split:]) if split else (data, data[::-1].copy())
    expected = scipy_hausdorff(P, Q)
    with pytest.MonkeyPatch.context() as mp:
        for early_exit_from, seeds in ((distances.EARLY_EXIT_MIN_ENTRIES, nearest.SEED_ROWS), (1, 2)):
            mp.setattr(distances, "EARLY_EXIT_MIN_ENTRIES", early_exit_from)  # (1, 2): float32 filter, early exit
            mp.setattr(nearest, "SEED_ROWS", seeds)
            assert hausdorff(P, Q, device="cpu") == pytest.approx(expected, rel=RTOL, abs=0)
    assert euclidean(P, Q, device="cpu") == pytest.approx(cdist(P, Q).sum(), rel=RTOL, abs=0)
    np.testing.assert_allclose(pairwise_distances(P, Q, device="cpu"), cdist(P, Q), rtol=RTOL, atol=0)


@pytest.mark.parametrize("device", [None, "cpu", "cuda"])
def test_device_argument(device):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    P, Q = adversarial_case("offset_1e6_small_noise", n=600, m=500, dim=48)
    assert hausdorff(P, Q, device=device) == pytest.approx(scipy_hausdorff(P, Q), rel=RTOL)
    assert euclidean(P, Q, device=device) == pytest.approx(cdist(P, Q).sum(), rel=RTOL)
    np.testing.assert_allclose(pairwise_distances(P, Q, device=device), cdist(P, Q), rtol=RTOL)


def test_bad_device_raises():
    P, Q = adversarial_case("gaussian", n=5, m=5)
    with pytest.raises(ValueError, match="device"):
        hausdorff(P, Q, device=3.5)


def test_read_only_input_from_an_object_store():
    P, Q = adversarial_case("gaussian")
    P.flags.writeable = False
    assert hausdorff(P, Q, device="cpu") == pytest.approx(scipy_hausdorff(P, Q), rel=RTOL)


# --------------------------------------------------------------------------------------------- batched metrics


def _resamples(n_ref=120, n_eval=90, dim=8, n_res=40, s_ref=15, s_eval=12, seed=0, case="gaussian"):
    P, Q = adversarial_case(case, n=n_ref, m=n_eval, dim=dim, seed=seed)
    rng = np.random.default_rng(seed + 1)
    return P, Q, rng.integers(0, n_ref, (n_res, s_ref)), rng.integers(0, n_eval, (n_res, s_eval))


@pytest.mark.parametrize("strategy", ["auto", "gather", "direct"])
@pytest.mark.parametrize("case", ["gaussian", "offset_1e6_small_noise", "duplicates", "lattice_ties", "tiny_scale"])
def test_distance_batches_equal_the_per_resample_functions(case, strategy):
    P, Q, ri, ei = _resamples(case=case)
    expected = {
        "hausdorff": [scipy_hausdorff(P[a], Q[b]) for a, b in zip(ri, ei, strict=False)],
        "euclidean": [cdist(P[a], Q[b]).sum() for a, b in zip(ri, ei, strict=False)],
        "chamfer": [chamfer(P[a], Q[b]) for a, b in zip(ri, ei, strict=False)],
    }
    for block_size in (distances.DEFAULT_BLOCK_SIZE, 50):
        kw = dict(strategy=strategy, block_size=block_size, device="cpu")
        np.testing.assert_allclose(hausdorff_batch(P, Q, ri, ei, **kw), expected["hausdorff"], rtol=RTOL)
        np.testing.assert_allclose(euclidean_batch(P, Q, ri, ei, **kw), expected["euclidean"], rtol=RTOL)
        np.testing.assert_allclose(chamfer_batch(P, Q, ri, ei, **kw), expected["chamfer"], rtol=RTOL)


def test_auto_strategy_follows_the_cost_model():
    from experiments.metrics._kernels.resamples import gather_pays

    cpu = torch.device("cpu")
    assert not gather_pays(5000 * 1000, 1000 * 100 * 100, 64, cpu, 2**25)  # proj18: 40 MB matrix, 64-d
    assert gather_pays(1000 * 1000, 1000 * 100 * 100, 512, cpu, 2**25)  # small matrix, high d
    assert not gather_pays(1000 * 1000, 1000 * 100 * 100, 512, cpu, 2**19)  # over the memory budget
    assert gather_pays(5000 * 1000, 1000 * 100 * 100, 64, torch.device("cuda"), 2**25)


@pytest.mark.parametrize("with_matrix", [True, False])
@pytest.mark.parametrize("max_entries", [2**25, 0])
def test_mtopdiv_batch_is_bit_identical_to_mtopdiv(with_matrix, max_entries):
    P, Q, ri, ei = _resamples(n_ref=40, n_eval=30, dim=3, n_res=12, s_ref=14, s_eval=11, seed=4)
    P[3] = Q[5]  # a cross duplicate: a zeroed entry
    reference_distances = reference_distance_matrix(P) if with_matrix else None
    got = mtopdiv_batch(
        P, Q, ri, ei, backend="giotto", reference_distances=reference_distances, max_matrix_entries=max_entries
    )
    expected = [mtopdiv(P[a], Q[b], backend="giotto") for a, b in zip(ri, ei, strict=False)]
    np.testing.assert_array_equal(got, expected)


def test_reference_distance_matrix_is_cdist():
    P, _ = adversarial_case("offset_1e6_small_noise", n=50, m=1, dim=5)
    np.testing.assert_array_equal(reference_distance_matrix(P), cdist(P, P))
    np.testing.assert_array_equal(reference_distance_matrix(P[:1]), [[0.0]])


def test_score_resamples_matches_every_metric_per_resample():
    P, Q, ri, ei = _resamples(n_ref=40, n_eval=35, dim=4, n_res=6, s_ref=10, s_eval=10, seed=7)
    names = list(METRICS)
    options = {"mtopdiv": {"backend": "giotto"}, "wasserstein": {"seed": 3}, "hausdorff": {"block_size": 64}}
    got = score_resamples(P, Q, ri, ei, names, options, reference_distances=reference_distance_matrix(P))
    assert got.shape == (len(names), len(ri))
    for i, name in enumerate(names):
        expected = [METRICS[name](P[a], Q[b], **options.get(name, {})) for a, b in zip(ri, ei, strict=False)]
        if name == "mmd":  # the bootstrap's MMD leaves repeated indices out (tests/test_mmd_resampled.py)
            expected = [mmd_resampled(P, Q, a, b) for a, b in zip(ri, ei, strict=True)]
        if name == "mtopdiv":
            np.testing.assert_array_equal(got[i], expected)
        else:
            np.testing.assert_allclose(got[i], expected, rtol=RTOL, atol=1e-15, err_msg=name)
    assert set(BATCHED_METRICS) <= set(METRICS)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(ref_idx=np.zeros((3, 2), dtype=int), eval_idx=np.zeros((4, 2), dtype=int)), "one row per resample"),
        (dict(ref_idx=np.zeros(3, dtype=int)), "2-D"),
        (dict(ref_idx=np.full((3, 2), 99)), r"outside \[0, 10\)"),
        (dict(eval_idx=np.full((3, 2), -1)), r"outside \[0, 8\)"),
        (dict(ref_idx=np.zeros((3, 2))), "integer"),
    ],
)
def test_batched_bad_indices_raise(kwargs, message):
    rng = np.random.default_rng(0)
    args = dict(
        reference=rng.normal(size=(10, 2)),
        cloud=rng.normal(size=(8, 2)),
        ref_idx=np.zeros((3, 2), dtype=int),
        eval_idx=np.zeros((3, 2), dtype=int),
    )
    args.update(kwargs)
    for fn in (hausdorff_batch, mtopdiv_batch):
        with pytest.raises(ValueError, match=message):
            fn(**args)


def test_batched_bad_options_raise():
    P, Q, ri, ei = _resamples(n_res=2)
    with pytest.raises(ValueError, match="strategy"):
        hausdorff_batch(P, Q, ri, ei, strategy="fast")
    with pytest.raises(ValueError, match="block_size"):
        euclidean_batch(P, Q, ri, ei, block_size=0)
    with pytest.raises(ValueError, match="reference_distances must have shape"):
        mtopdiv_batch(P, Q, ri, ei, reference_distances=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="unknown metric"):
        score_resamples(P, Q, ri, ei, ["cosine"])
    with pytest.raises(ValueError, match="P contains 1 NaN"):
        P_bad = P.copy()
        P_bad[0, 0] = np.nan
        hausdorff_batch(P_bad, Q, ri, ei)


# --------------------------------------------------------------------------------------------- bootstrap tasks


def test_task_granularity():
    from sweeper.bootstrap import MAX_RESAMPLES_PER_TASK, MIN_RESAMPLES_PER_TASK, resamples_per_task

    assert resamples_per_task(1000, 10, ["hausdorff", "euclidean"], 2, 4) == 1000  # one task per class
    assert resamples_per_task(1000, 1, ["hausdorff"], 4, 4) == 250  # fewer classes than workers
    assert resamples_per_task(1000, 10, ["hausdorff", "euclidean", "mtopdiv"], 2, 4) == MAX_RESAMPLES_PER_TASK
    assert resamples_per_task(1000, 10, ["hausdorff", "euclidean", "mtopdiv"], 64, 4) == 39
    assert resamples_per_task(100, 1, ["mtopdiv"], 16, 4) == MIN_RESAMPLES_PER_TASK
    assert resamples_per_task(10, 1, ["mmd"], 16, 4) == 10


@pytest.mark.slow
def test_bootstrap_with_mtopdiv_matches_a_direct_loop_and_ignores_worker_count(local_ray):
    from sweeper.bootstrap import bootstrap_scores, draw_indices

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(20, 3))  # small enough that the shared d(P, P) is used
    clouds = {"a": rng.normal(size=(25, 3)), "b": rng.normal(1.0, size=(18, 3))}
    metrics = ["hausdorff", "euclidean", "mtopdiv", "energy"]
    kw = dict(n_resamples=30, sample_size=6, seed=2, metric_options={"mtopdiv": {"backend": "giotto"}})
    s1, r1 = bootstrap_scores(ref, clouds, metrics, workers=1, **kw)
    s2, r2 = bootstrap_scores(ref, clouds, metrics, workers=2, tasks_per_worker=3, **kw)
    pd = pytest.importorskip("pandas")
    pd.testing.assert_frame_equal(s1, s2, check_exact=False, rtol=RTOL)
    pd.testing.assert_frame_equal(r1, r2, check_exact=False, rtol=RTOL)
    for pos, (name, cloud) in enumerate(clouds.items()):
        ri, ei = draw_indices(len(ref), len(cloud), 30, 6, seed=2, class_position=pos)
        for metric in metrics:
            got = r1[(r1.eval_class == name) & (r1.metric == metric)].sort_values("resample")["value"].to_numpy()
            opts = kw["metric_options"].get(metric, {})
            expect = [METRICS[metric](ref[a], cloud[b], **opts) for a, b in zip(ri, ei, strict=False)]
            if metric == "mtopdiv":
                np.testing.assert_array_equal(got, expect)
                got2 = r2[(r2.eval_class == name) & (r2.metric == metric)].sort_values("resample")["value"]
                np.testing.assert_array_equal(got2.to_numpy(), expect)
            else:
                np.testing.assert_allclose(got, expect, rtol=RTOL, err_msg=metric)
