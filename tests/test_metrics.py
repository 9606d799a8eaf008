"""Tests for experiments.metrics, each against an independent computation."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist, directed_hausdorff
from sklearn.metrics.pairwise import pairwise_distances

# The package re-exports the function `mtopdiv`, which shadows the submodule of the same name as an attribute.
import experiments.metrics.cross_barcode as mtopdiv_module
from experiments.metrics import (
    METRICS,
    available_backends,
    check_clouds,
    cross_distance_matrix,
    euclidean,
    hausdorff,
    mtopdiv,
    mtopdiv_subsampled,
)

ripser = pytest.importorskip("ripser")

# (n_P, n_Q, dim)
SHAPES = [(1, 1, 1), (1, 9, 3), (17, 5, 2), (40, 63, 7), (128, 33, 16)]
PERSISTENCE_SHAPES = [(10, 10, 2), (30, 20, 3), (15, 45, 2), (40, 40, 8)]
RTOL_FLOAT32 = 1e-4  # all persistence backends compute in float32


def clouds(n_p: int, n_q: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_p, dim)), rng.normal(loc=0.5, size=(n_q, dim))


def reference_cross_barcode_h1_sum(P: np.ndarray, Q: np.ndarray) -> float:
    """Brute force, following the reference mtd/barcodes.py step by step, then ripser.py on the symmetrised matrix."""
    a, b = Q, P  # calc_cross_barcodes swaps its clouds: cloud_1 = Q, cloud_2 = P
    d1 = pairwise_distances(b, a)
    d2 = pairwise_distances(b, b)
    s = a.shape[0] + b.shape[0]
    d = np.zeros((s, s))
    d[a.shape[0] :, : a.shape[0]] = d1
    d[a.shape[0] :, a.shape[0] :] = d2
    m = d[a.shape[0] :, : a.shape[0]].mean()
    d[: a.shape[0]][: a.shape[0]] = 0  # the reference's chained indexing (zeroes whole rows)
    d[d < m * 1e-6] = 0
    lower = np.tril(d, k=-1)  # the reference hands only this triangle to ripser++ ("lower-distance")
    full = lower + lower.T
    h1 = ripser.ripser(full, distance_matrix=True, maxdim=1)["dgms"][1]
    assert np.isfinite(h1).all()
    return float(np.sum(h1[:, 1] - h1[:, 0]))


# --------------------------------------------------------------------------------------------- registry


def test_registry_names_and_callables():
    assert {"hausdorff": hausdorff, "euclidean": euclidean, "mtopdiv": mtopdiv}.items() <= METRICS.items()
    P, Q = clouds(8, 6, 2)
    for name, metric in METRICS.items():
        value = metric(P, Q)
        assert isinstance(value, float), name
        assert np.isfinite(value) and (value >= 0 or name == "mmd"), name


# --------------------------------------------------------------------------------------------- hausdorff / euclidean


@pytest.mark.parametrize("block_size", [None, 1, 7, 50])
@pytest.mark.parametrize("n_p,n_q,dim", SHAPES)
def test_hausdorff_matches_scipy_directed_both_ways(n_p, n_q, dim, block_size):
    P, Q = clouds(n_p, n_q, dim, seed=n_p + n_q)
    expected = max(directed_hausdorff(P, Q)[0], directed_hausdorff(Q, P)[0])
    kwargs = {} if block_size is None else {"block_size": block_size}
    assert hausdorff(P, Q, **kwargs) == pytest.approx(expected, rel=1e-12)
    assert hausdorff(Q, P, **kwargs) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("block_size", [None, 1, 7, 50])
@pytest.mark.parametrize("n_p,n_q,dim", SHAPES)
def test_euclidean_matches_cdist_sum(n_p, n_q, dim, block_size):
    P, Q = clouds(n_p, n_q, dim, seed=n_p * n_q)
    kwargs = {} if block_size is None else {"block_size": block_size}
    assert euclidean(P, Q, **kwargs) == pytest.approx(cdist(P, Q).sum(), rel=1e-12)
    assert euclidean(Q, P, **kwargs) == pytest.approx(cdist(P, Q).sum(), rel=1e-12)


def test_identity_properties():
    P, _ = clouds(37, 1, 5)
    assert hausdorff(P, P) == 0.0
    assert hausdorff(P, P[::-1]) == 0.0
    assert euclidean(P, P) == pytest.approx(cdist(P, P).sum(), rel=1e-12)
    # a superset at Hausdorff distance = distance of the one extra point to the cloud
    extra = np.full((1, 5), 10.0)
    assert hausdorff(P, np.vstack([P, extra])) == pytest.approx(cdist(extra, P).min(), rel=1e-12)


def test_accepts_lists_and_integers():
    P = [[0, 0], [3, 4]]
    Q = [[0, 0]]
    assert hausdorff(P, Q) == 5.0
    assert euclidean(P, Q) == 5.0
    P_arr, Q_arr = check_clouds(P, Q)
    assert P_arr.dtype == Q_arr.dtype == np.float64
    assert P_arr.shape == (2, 2) and Q_arr.shape == (1, 2)


@pytest.mark.parametrize("metric", [hausdorff, euclidean])
@pytest.mark.parametrize("block_size", [0, -3, 2.5, True])
def test_bad_block_size(metric, block_size):
    P, Q = clouds(4, 4, 2)
    with pytest.raises(ValueError, match="block_size"):
        metric(P, Q, block_size=block_size)


# --------------------------------------------------------------------------------------------- cross distance matrix


def test_cross_distance_matrix_layout():
    P, Q = clouds(7, 4, 3)
    P[2] = Q[1]  # an exact duplicate across clouds: cross distance 0
    P[5] = P[0] + 1e-9  # a near-duplicate inside P: below 1e-6 * mean cross distance, zeroed
    D = cross_distance_matrix(P, Q)
    m = len(Q)
    assert D.shape == (11, 11)
    np.testing.assert_array_equal(D, D.T)
    np.testing.assert_array_equal(np.diag(D), 0.0)
    np.testing.assert_array_equal(D[:m, :m], 0.0)
    np.testing.assert_allclose(D[m:, :m], cdist(P, Q), rtol=1e-12)
    expected_pp = cdist(P, P)
    expected_pp[0, 5] = expected_pp[5, 0] = 0.0
    np.testing.assert_allclose(D[m:, m:], expected_pp, rtol=1e-12, atol=0)
    assert D[m + 2, 1] == 0.0


# --------------------------------------------------------------------------------------------- mtopdiv


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("n_p,n_q,dim", PERSISTENCE_SHAPES)
def test_mtopdiv_giotto_matches_ripser(n_p, n_q, dim, seed):
    P, Q = clouds(n_p, n_q, dim, seed)
    g = mtopdiv(P, Q, backend="giotto")
    r = mtopdiv(P, Q, backend="ripser")
    assert g > 0
    assert g == pytest.approx(r, rel=RTOL_FLOAT32)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_p,n_q,dim", PERSISTENCE_SHAPES)
def test_mtopdiv_matches_bruteforce_reference(n_p, n_q, dim, seed):
    P, Q = clouds(n_p, n_q, dim, seed + 10)
    expected = reference_cross_barcode_h1_sum(P, Q)  # 0 for some small 2-D cases
    assert mtopdiv(P, Q, backend="giotto") == pytest.approx(expected, rel=RTOL_FLOAT32)
    assert mtopdiv(P, Q, backend="ripser") == pytest.approx(expected, rel=RTOL_FLOAT32)


def test_one_sided_reference_matrix_loses_every_bar():
    """Why the matrix is symmetrised: ripser.py reads the upper triangle, where the reference matrix has zeros."""
    P, Q = clouds(20, 15, 2, seed=3)
    s = len(P) + len(Q)
    d = np.zeros((s, s))
    d[len(Q) :, : len(Q)] = pairwise_distances(P, Q)
    d[len(Q) :, len(Q) :] = pairwise_distances(P, P)
    d[: len(Q)][: len(Q)] = 0
    one_sided = np.tril(d, k=-1)
    h1 = ripser.ripser(one_sided, distance_matrix=True, maxdim=1)["dgms"][1]
    assert np.sum(h1[:, 1] - h1[:, 0]) == 0.0
    assert mtopdiv(P, Q, backend="ripser") > 0


def test_mtopdiv_is_asymmetric():
    rng = np.random.default_rng(0)
    t = rng.uniform(0, 2 * np.pi, 40)
    circle = np.c_[np.cos(t), np.sin(t)] + 0.02 * rng.standard_normal((40, 2))
    blob = 0.05 * rng.standard_normal((20, 2))
    forward, backward = mtopdiv(circle, blob), mtopdiv(blob, circle)
    assert forward > 2 * backward > 0  # the circle's loop is not filled by the blob
    P, Q = clouds(30, 25, 3)
    assert mtopdiv(P, Q) != pytest.approx(mtopdiv(Q, P), rel=1e-3)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_invariant_to_point_order(name):
    metric = METRICS[name]
    P, Q = clouds(30, 25, 4, seed=5)
    rng = np.random.default_rng(1)
    P_perm, Q_perm = P[rng.permutation(len(P))], Q[rng.permutation(len(Q))]
    assert metric(P_perm, Q_perm) == pytest.approx(metric(P, Q), rel=1e-6)


def test_mtopdiv_of_identical_clouds_is_zero():
    P, _ = clouds(25, 1, 3)
    assert mtopdiv(P, P) == pytest.approx(0.0, abs=1e-6)


def test_infinite_bar_raises(monkeypatch):
    monkeypatch.setattr(mtopdiv_module, "h1_bars", lambda D, backend: np.array([[0.1, 0.5], [0.2, np.inf]]))
    P, Q = clouds(5, 5, 2)
    with pytest.raises(RuntimeError, match="infinite H1 bar"):
        mtopdiv(P, Q, backend="giotto")


# --------------------------------------------------------------------------------------------- backends


def test_available_backends_cpu():
    backends = available_backends()
    assert "giotto" in backends and "ripser" in backends
    assert set(backends) <= {"ripserplusplus", "giotto", "ripser"}


def test_unknown_backend_lists_valid_ones():
    P, Q = clouds(5, 5, 2)
    with pytest.raises(ValueError, match=r"'giotto'.*'ripser'"):
        mtopdiv(P, Q, backend="gudhi")


def test_missing_backends_name_the_pip_command(monkeypatch):
    P, Q = clouds(5, 5, 2)
    monkeypatch.setitem(sys.modules, "ripserplusplus", None)  # makes `import ripserplusplus` fail
    monkeypatch.setitem(sys.modules, "ripser", None)
    with pytest.raises(ImportError, match=r"pip install 'embedding-sweeper\[gpu\]'"):
        mtopdiv(P, Q, backend="ripserplusplus")
    with pytest.raises(ImportError, match="pip install ripser"):
        mtopdiv(P, Q, backend="ripser")
    assert available_backends() == ["giotto"]


def test_auto_uses_giotto_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert mtopdiv_module.resolve_backend("auto") == "giotto"
    P, Q = clouds(12, 9, 2)
    assert mtopdiv(P, Q) == mtopdiv(P, Q, backend="giotto")


def test_auto_uses_giotto_without_ripserplusplus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "ripserplusplus", None)
    assert mtopdiv_module.resolve_backend("auto") == "giotto"
    assert mtopdiv_module.resolve_backend("auto", device="cuda") == "giotto"


def test_ripserplusplus_matches_giotto():
    pytest.importorskip("ripserplusplus")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("ripser++ needs a CUDA GPU")
    assert mtopdiv_module.resolve_backend("auto", device="cuda") == "ripserplusplus"
    for n_p, n_q, dim in PERSISTENCE_SHAPES:
        P, Q = clouds(n_p, n_q, dim, seed=4)
        assert mtopdiv(P, Q, backend="ripserplusplus") == pytest.approx(
            mtopdiv(P, Q, backend="giotto"), rel=RTOL_FLOAT32
        )


# --------------------------------------------------------------------------------------------- subsampled estimator


def test_subsampled_reproduces_reference_draws():
    """Q is drawn before P, without replacement, from numpy's global state when random_state is None."""
    P, Q = clouds(40, 50, 3, seed=6)
    np.random.seed(11)
    expected = []
    for _ in range(3):
        idx_q = np.random.choice(50, 20, replace=False)
        idx_p = np.random.choice(40, 10, replace=False)
        expected.append(reference_cross_barcode_h1_sum(P[idx_p], Q[idx_q]))
    np.random.seed(11)
    assert mtopdiv_subsampled(P, Q, 10, 20, n=3, backend="giotto") == pytest.approx(np.mean(expected), rel=RTOL_FLOAT32)
    from_int = mtopdiv_subsampled(P, Q, 10, 20, n=3, random_state=11, backend="giotto")
    from_rs = mtopdiv_subsampled(P, Q, 10, 20, n=3, random_state=np.random.RandomState(11), backend="giotto")
    assert from_int == from_rs == pytest.approx(np.mean(expected), rel=RTOL_FLOAT32)


def test_subsampled_with_full_batches_equals_mtopdiv():
    P, Q = clouds(15, 12, 2, seed=8)
    assert mtopdiv_subsampled(P, Q, 100, 100, n=2, random_state=0) == pytest.approx(mtopdiv(P, Q), rel=1e-6)


@pytest.mark.parametrize(
    "kwargs", [{"batch_size1": 0}, {"batch_size2": -1}, {"n": 0}, {"n": 2.0}, {"random_state": "seed"}]
)
def test_subsampled_bad_arguments(kwargs):
    P, Q = clouds(5, 5, 2)
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        mtopdiv_subsampled(P, Q, **kwargs)


def _published_example_state() -> tuple[np.ndarray, np.ndarray, np.random.RandomState]:
    """IlyaTrofimov/MTopDiv Example.ipynb: np.random.seed(7); P = rand(1000, 2); Q = rand(1000, 2)."""
    rs = np.random.RandomState(7)
    P = rs.rand(1000, 2)
    Q = rs.rand(1000, 2)
    return P, Q, rs


def test_published_example_cross_barcode():
    """calc_cross_barcodes(P, Q, batch_size1=100, batch_size2=1000) -> get_score(..., 1, 'sum_length') = 0.0342284."""
    P, Q, rs = _published_example_state()
    idx_q = rs.choice(1000, 1000, replace=False)
    idx_p = rs.choice(1000, 100, replace=False)
    assert mtopdiv(P[idx_p], Q[idx_q], backend="giotto") == pytest.approx(0.0342284, rel=1e-5)


@pytest.mark.slow
def test_published_example_mtopdiv():
    """The notebook then calls mtd.mtopdiv(P, Q, batch_size1=100, batch_size2=1000) -> 0.035247244 (20 draws)."""
    P, Q, rs = _published_example_state()
    rs.choice(1000, 1000, replace=False)  # the draws of the preceding calc_cross_barcodes cell
    rs.choice(1000, 100, replace=False)
    score = mtopdiv_subsampled(P, Q, batch_size1=100, batch_size2=1000, random_state=rs, backend="giotto")
    assert score == pytest.approx(0.035247244, rel=1e-5)


# --------------------------------------------------------------------------------------------- bad input

BAD_INPUTS = {
    "P empty": (np.empty((0, 3)), np.ones((4, 3)), r"P is an empty cloud: it has 0 points"),
    "Q empty": (np.ones((4, 3)), np.empty((0, 3)), r"Q is an empty cloud: it has 0 points"),
    "zero dims": (np.empty((4, 0)), np.empty((4, 0)), r"P is an empty cloud: its points have 0 dimensions"),
    "mismatched dims": (np.ones((4, 3)), np.ones((5, 2)), r"same number of dimensions; P has 3 .* Q has 2"),
    "NaN in P": (np.array([[0.0, np.nan], [1.0, 1.0]]), np.ones((3, 2)), r"P contains 1 NaN value"),
    "NaN in Q": (np.ones((3, 2)), np.array([[0.0, np.nan], [np.nan, 1.0]]), r"Q contains 2 NaN values"),
    "inf in Q": (np.ones((3, 2)), np.array([[0.0, np.inf], [1.0, 1.0]]), r"Q contains 1 infinite value"),
    "-inf in P": (np.array([[-np.inf, 0.0]]), np.ones((3, 2)), r"P contains 1 infinite value"),
    "1-D P": (np.ones(5), np.ones((3, 5)), r"P must be a 2-D array .* got a 1-D array of shape \(5,\)"),
    "3-D Q": (np.ones((3, 2)), np.ones((3, 2, 1)), r"Q must be a 2-D array .* got a 3-D array"),
    "strings": (np.array([["a", "b"]]), np.ones((3, 2)), r"P cannot be converted to a float64 array"),
}


@pytest.mark.parametrize("name", sorted(METRICS))
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_helpful_value_error(name, case):
    P, Q, message = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        METRICS[name](P, Q)
    with pytest.raises(ValueError, match=message):
        check_clouds(P, Q)


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_subsampled_and_matrix(case):
    P, Q, message = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        mtopdiv_subsampled(P, Q, 2, 2, n=1)
    with pytest.raises(ValueError, match=message):
        cross_distance_matrix(P, Q)


@pytest.mark.parametrize("n_p,n_q,dim", [(5, 7, 3), (40, 13, 8), (1, 1, 2)])
def test_euclidean_mean_matches_cdist_mean(n_p, n_q, dim):
    from experiments.metrics import euclidean_mean

    P, Q = clouds(n_p, n_q, dim)
    assert euclidean_mean(P, Q) == pytest.approx(cdist(P, Q).mean(), rel=1e-12)
