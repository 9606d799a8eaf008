"""Tests for experiments.metrics.distributional (chamfer, mmd, energy, wasserstein), each against an independent
computation (brute-force loops, scipy), plus property tests with hypothesis for every metric in METRICS."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import pdist
from scipy.stats import energy_distance, wasserstein_distance

from experiments.metrics import METRICS, chamfer, energy, mmd, wasserstein
from experiments.metrics.distributional import median_heuristic, sliced_wasserstein
from experiments.metrics.wasserstein import random_directions

NEW_METRICS = {"chamfer": chamfer, "mmd": mmd, "energy": energy, "wasserstein": wasserstein}

# (n_P, n_Q, dim)
SHAPES = [(2, 2, 1), (3, 5, 2), (7, 4, 3), (9, 9, 5), (12, 6, 16)]


def clouds(n_p: int, n_q: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_p, dim)), rng.normal(loc=0.5, size=(n_q, dim))


def dist(x: np.ndarray, y: np.ndarray) -> float:
    return math.sqrt(sum((float(a) - float(b)) ** 2 for a, b in zip(x, y, strict=False)))


# --------------------------------------------------------------------------------------------- brute force


def chamfer_loop(P, Q) -> float:
    forward = sum(min(dist(p, q) for q in Q) for p in P) / len(P)
    backward = sum(min(dist(p, q) for p in P) for q in Q) / len(Q)
    return forward + backward


def mmd_loop(P, Q, sigma: float) -> float:
    """Gretton et al. (2012), eq. 3, term by term."""
    k = lambda x, y: math.exp(-(dist(x, y) ** 2) / (2 * sigma**2))  # noqa: E731
    n, m = len(P), len(Q)
    xx = sum(k(P[i], P[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(Q[i], Q[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(p, q) for p in P for q in Q) / (n * m)
    return xx + yy - 2 * xy


def energy_loop(P, Q) -> float:
    """sqrt(2 E|X-Y| - E|X-X'| - E|Y-Y'|), V-statistics over all pairs (i == j included)."""
    xy = sum(dist(p, q) for p in P for q in Q) / (len(P) * len(Q))
    xx = sum(dist(a, b) for a in P for b in P) / len(P) ** 2
    yy = sum(dist(a, b) for a in Q for b in Q) / len(Q) ** 2
    return math.sqrt(2 * xy - xx - yy)


def wasserstein_permutations(P, Q) -> float:
    n = len(P)
    return min(sum(dist(P[i], Q[j]) for i, j in enumerate(perm)) / n for perm in itertools.permutations(range(n)))


# --------------------------------------------------------------------------------------------- registry


def test_registry_has_the_new_metrics():
    for name, metric in NEW_METRICS.items():
        assert METRICS[name] is metric
    P, Q = clouds(8, 6, 2)
    for name, metric in NEW_METRICS.items():
        value = metric(P, Q)
        assert isinstance(value, float) and np.isfinite(value), name


# --------------------------------------------------------------------------------------------- chamfer


@pytest.mark.parametrize("n_p,n_q,dim", [*SHAPES, (1, 1, 1), (1, 6, 3)])
def test_chamfer_matches_double_loop(n_p, n_q, dim):
    P, Q = clouds(n_p, n_q, dim, seed=n_p + n_q)
    assert chamfer(P, Q) == pytest.approx(chamfer_loop(P, Q), rel=1e-12)


@pytest.mark.parametrize("block_size", [1, 5, 64])
def test_chamfer_blocks_agree(block_size):
    P, Q = clouds(40, 25, 3, seed=2)
    assert chamfer(P, Q, block_size=block_size) == pytest.approx(chamfer(P, Q), rel=1e-12)
    with pytest.raises(ValueError, match="block_size"):
        chamfer(P, Q, block_size=0)


def test_chamfer_sum_not_average_of_directed_means():
    P = np.array([[0.0, 0.0]])
    Q = np.array([[3.0, 4.0], [0.0, 0.0]])
    # P -> Q: 0; Q -> P: (5 + 0) / 2 = 2.5; sum (not mean) of the two, plain (not squared) distances
    assert chamfer(P, Q) == 2.5


# --------------------------------------------------------------------------------------------- mmd


@pytest.mark.parametrize("n_p,n_q,dim", SHAPES)
def test_mmd_matches_loop_with_median_heuristic(n_p, n_q, dim):
    P, Q = clouds(n_p, n_q, dim, seed=3 * n_p + n_q)
    sigma = float(np.median(pdist(np.vstack([P, Q]))))
    assert median_heuristic(P, Q) == pytest.approx(sigma, rel=1e-12)
    assert mmd(P, Q) == pytest.approx(mmd_loop(P, Q, sigma), rel=1e-10, abs=1e-14)


@pytest.mark.parametrize("bandwidth", [0.1, 1.0, 7.5, 3])
@pytest.mark.parametrize("n_p,n_q,dim", SHAPES)
def test_mmd_matches_loop_with_fixed_bandwidth(n_p, n_q, dim, bandwidth):
    P, Q = clouds(n_p, n_q, dim, seed=n_p * n_q)
    assert mmd(P, Q, bandwidth=bandwidth) == pytest.approx(mmd_loop(P, Q, bandwidth), rel=1e-10, abs=1e-14)


def test_median_heuristic_degenerate_cases():
    # more than half of the pooled pairs are duplicates: median of the positive distances
    P = np.zeros((4, 2))
    Q = np.array([[0.0, 0.0], [3.0, 4.0]])
    assert float(np.median(pdist(np.vstack([P, Q])))) == 0.0
    assert median_heuristic(P, Q) == 5.0
    assert np.isfinite(mmd(P, Q))
    # all points coincide: every kernel value is 1, MMD^2_u = 1 + 1 - 2 = 0
    assert median_heuristic(P, P[:2]) == 1.0
    assert mmd(P, P[:2]) == 0.0


def test_mmd_separates_shifted_clouds_and_is_scale_free():
    rng = np.random.default_rng(0)
    P, Q = rng.normal(size=(60, 3)), rng.normal(size=(50, 3))
    same, shifted = mmd(P, Q), mmd(P, Q + 2.0)
    assert abs(same) < 0.05 < shifted
    assert mmd(10 * P, 10 * Q) == pytest.approx(same, rel=1e-9)  # median heuristic: invariant to a common scale


def test_mmd_of_a_cloud_with_itself_is_the_negative_closed_form():
    P, _ = clouds(10, 1, 3)
    sigma = median_heuristic(P, P)
    K = np.exp(-(pdist(P) ** 2) / (2 * sigma**2))  # each unordered pair once
    assert mmd(P, P) == pytest.approx(-(2 / len(P)) * (1 - K.mean()), rel=1e-12)
    assert mmd(P, P) < 0


@pytest.mark.parametrize("sizes", [(1, 5), (5, 1), (1, 1)])
def test_mmd_needs_two_points_per_cloud(sizes):
    P, Q = clouds(*sizes, 3)
    name = "P" if sizes[0] == 1 else "Q"
    with pytest.raises(ValueError, match=rf"at least 2 points per cloud; {name} has 1 \(shape \(1, 3\)\)"):
        mmd(P, Q)


@pytest.mark.parametrize("bandwidth", [0, -1.0, np.nan, np.inf, "1", True, 1e-200, 1e200])
def test_mmd_bad_bandwidth(bandwidth):
    P, Q = clouds(4, 4, 2)
    with pytest.raises(ValueError, match="bandwidth"):
        mmd(P, Q, bandwidth=bandwidth)


# --------------------------------------------------------------------------------------------- energy


@pytest.mark.parametrize("n_p,n_q", [(1, 1), (1, 7), (5, 8), (30, 11)])
def test_energy_matches_scipy_in_1d(n_p, n_q):
    P, Q = clouds(n_p, n_q, 1, seed=n_p)
    assert energy(P, Q) == pytest.approx(energy_distance(P[:, 0], Q[:, 0]), rel=1e-10)


@pytest.mark.parametrize("n_p,n_q,dim", [*SHAPES, (1, 4, 3)])
def test_energy_matches_double_loop(n_p, n_q, dim):
    P, Q = clouds(n_p, n_q, dim, seed=n_p + 7 * n_q)
    assert energy(P, Q) == pytest.approx(energy_loop(P, Q), rel=1e-10)


@pytest.mark.parametrize("block_size", [1, 5, 64])
def test_energy_blocks_agree(block_size):
    P, Q = clouds(40, 25, 3, seed=4)
    assert energy(P, Q, block_size=block_size) == pytest.approx(energy(P, Q), rel=1e-10)


def test_energy_is_zero_for_the_same_distribution():
    P, _ = clouds(13, 1, 4)
    assert energy(P, P) == 0.0
    assert energy(P, np.vstack([P, P])) == pytest.approx(0.0, abs=1e-6)  # same empirical measure
    assert energy(P, P + 1.0) > 0.5


# --------------------------------------------------------------------------------------------- wasserstein


@pytest.mark.parametrize("n,dim,seed", [(1, 3, 0), (2, 1, 0), (4, 2, 1), (5, 3, 2), (6, 4, 3), (6, 2, 4)])
def test_wasserstein_equal_sizes_matches_all_permutations(n, dim, seed):
    P, Q = clouds(n, n, dim, seed)
    assert wasserstein(P, Q) == pytest.approx(wasserstein_permutations(P, Q), rel=1e-12)


@pytest.mark.parametrize("n", [1, 3, 10, 50])
def test_wasserstein_equal_sizes_matches_scipy_in_1d(n):
    P, Q = clouds(n, n, 1, seed=n)
    assert wasserstein(P, Q) == pytest.approx(wasserstein_distance(P[:, 0], Q[:, 0]), rel=1e-12)


def test_wasserstein_equal_sizes_ignores_projection_arguments():
    P, Q = clouds(8, 8, 3)
    assert wasserstein(P, Q, n_projections=1, seed=5) == wasserstein(P, Q)


@pytest.mark.parametrize("n_p,n_q", [(1, 2), (3, 7), (10, 4), (25, 40)])
def test_sliced_branch_in_1d_is_scipys_exact_w1(n_p, n_q):
    """Every unit direction in 1-D is +1 or -1, and W1 is invariant to reflecting both clouds."""
    P, Q = clouds(n_p, n_q, 1, seed=n_p * n_q)
    assert wasserstein(P, Q) == pytest.approx(wasserstein_distance(P[:, 0], Q[:, 0]), rel=1e-12)
    assert wasserstein(P, Q, n_projections=3, seed=9) == pytest.approx(
        wasserstein_distance(P[:, 0], Q[:, 0]), rel=1e-12
    )


@pytest.mark.parametrize("n_p,n_q,dim", [(3, 5, 2), (7, 4, 3), (12, 6, 16), (40, 33, 8)])
def test_sliced_branch_is_the_mean_of_scipy_over_seeded_directions(n_p, n_q, dim):
    P, Q = clouds(n_p, n_q, dim, seed=dim)
    rng = np.random.default_rng(0)  # the documented construction of the directions, independently
    thetas = rng.standard_normal((200, dim))
    thetas /= np.linalg.norm(thetas, axis=1, keepdims=True)
    np.testing.assert_allclose(random_directions(200, dim, 0), thetas, rtol=1e-15)
    expected = np.mean([wasserstein_distance(P @ t, Q @ t) for t in thetas])
    assert wasserstein(P, Q) == pytest.approx(expected, rel=1e-12)
    assert wasserstein(P, Q) == sliced_wasserstein(P, Q)
    # a lower bound of the exact W1 between the same empirical measures (duplicate every point of Q n_p times...)
    assert sliced_wasserstein(P, Q) <= wasserstein(np.repeat(P, n_q, axis=0), np.repeat(Q, n_p, axis=0)) + 1e-12


def test_sliced_branch_is_reproducible_with_the_seed():
    P, Q = clouds(20, 15, 5, seed=1)
    a = wasserstein(P, Q, seed=3)
    assert wasserstein(P, Q, seed=3) == a
    assert wasserstein(P, Q, seed=np.random.default_rng(3)) == a
    assert wasserstein(P, Q, seed=4) != a
    assert wasserstein(P, Q, n_projections=50, seed=3) != a


@pytest.mark.parametrize("kwargs", [{"n_projections": 0}, {"n_projections": 2.5}, {"seed": "x"}, {"seed": True}])
@pytest.mark.parametrize("sizes", [(5, 5), (5, 6)])
def test_wasserstein_bad_arguments_in_both_branches(kwargs, sizes):
    P, Q = clouds(*sizes, 2)
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        wasserstein(P, Q, **kwargs)


# --------------------------------------------------------------------------------------------- bad input

BAD_INPUTS = {
    "P empty": (np.empty((0, 3)), np.ones((4, 3)), r"P is an empty cloud: it has 0 points"),
    "Q empty": (np.ones((4, 3)), np.empty((0, 3)), r"Q is an empty cloud: it has 0 points"),
    "zero dims": (np.empty((4, 0)), np.empty((4, 0)), r"P is an empty cloud: its points have 0 dimensions"),
    "mismatched dims": (np.ones((4, 3)), np.ones((5, 2)), r"same number of dimensions; P has 3 .* Q has 2"),
    "NaN in P": (np.array([[0.0, np.nan], [1.0, 1.0]]), np.ones((3, 2)), r"P contains 1 NaN value"),
    "inf in Q": (np.ones((3, 2)), np.array([[0.0, np.inf], [1.0, 1.0]]), r"Q contains 1 infinite value"),
    "-inf in P": (np.array([[-np.inf, 0.0], [1.0, 1.0]]), np.ones((3, 2)), r"P contains 1 infinite value"),
    "1-D P": (np.ones(5), np.ones((3, 5)), r"P must be a 2-D array .* got a 1-D array of shape \(5,\)"),
    "1-D Q": (np.ones((3, 5)), np.ones(5), r"Q must be a 2-D array .* got a 1-D array of shape \(5,\)"),
}


@pytest.mark.parametrize("name", sorted(NEW_METRICS))
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_helpful_value_error(name, case):
    P, Q, message = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        NEW_METRICS[name](P, Q)


# --------------------------------------------------------------------------------------------- properties
#
# Every metric in METRICS declares which properties it has; a metric added to METRICS without a declaration fails
# test_every_metric_declares_its_properties. mtopdiv (persistent homology, float32, not symmetric) gets only the
# order-invariance and identity checks, on at most 12 + 12 points and fewer examples.

SYMMETRIC = {"hausdorff", "euclidean", "euclidean_mean", "chamfer", "mmd", "energy", "wasserstein"}
ZERO_ON_IDENTICAL = {"hausdorff", "chamfer", "energy", "wasserstein", "mtopdiv"}  # f(P, P) == 0
ZERO_ON_SAME_DISTRIBUTION = {"hausdorff", "chamfer", "energy", "wasserstein"}  # f(P, [P; P]) == 0
NON_NEGATIVE = {
    "hausdorff",
    "euclidean",
    "euclidean_mean",
    "chamfer",
    "energy",
    "wasserstein",
    "mtopdiv",
}  # mmd is unbiased: not
SLOW = {"mtopdiv"}
DECLARED = SYMMETRIC | ZERO_ON_IDENTICAL | NON_NEGATIVE | {"mmd"}

# energy is a square root: near 0 a round-off of ~1e-15 in the squared value becomes ~3e-8.
ABS_TOL = {"energy": 1e-6, "mtopdiv": 1e-5}
REL_TOL = {"mtopdiv": 1e-4}  # all persistence backends compute in float32

FAST_SETTINGS = settings(max_examples=30, deadline=None)
SLOW_SETTINGS = settings(max_examples=8, deadline=None)

finite = st.floats(min_value=-10, max_value=10, allow_nan=False, allow_infinity=False, allow_subnormal=False)


@st.composite
def cloud_pairs(draw, equal_sizes: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Two clouds of 2-12 points in 1-4 dimensions, coordinates in [-10, 10] (duplicates and zeros included)."""
    dim = draw(st.integers(1, 4))
    n = draw(st.integers(2, 12))
    m = n if equal_sizes else draw(st.integers(2, 12))
    P = draw(arrays(np.float64, (n, dim), elements=finite))
    Q = draw(arrays(np.float64, (m, dim), elements=finite))
    return P, Q


def close(name: str, a: float, b: float) -> bool:
    return a == pytest.approx(b, rel=REL_TOL.get(name, 1e-9), abs=ABS_TOL.get(name, 1e-9))


def test_every_metric_declares_its_properties():
    assert set(METRICS) <= DECLARED, f"declare the properties of {sorted(set(METRICS) - DECLARED)} in this file"


def _property_params(names: set[str]) -> list:
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(set(METRICS) & names)]


def _settings(name: str) -> settings:
    return SLOW_SETTINGS if name in SLOW else FAST_SETTINGS


@pytest.mark.parametrize("name", _property_params(set(METRICS)))
def test_property_invariant_to_point_order(name):
    metric = METRICS[name]

    @_settings(name)
    @given(pair=cloud_pairs(), data=st.data())
    def check(pair, data):
        P, Q = pair
        p = data.draw(st.permutations(range(len(P))))
        q = data.draw(st.permutations(range(len(Q))))
        value = metric(P, Q)
        assert np.isfinite(value)
        assert close(name, metric(P[list(p)], Q[list(q)]), value)

    check()


@pytest.mark.parametrize("name", _property_params(SYMMETRIC))
def test_property_symmetric(name):
    metric = METRICS[name]

    @_settings(name)
    @given(pair=cloud_pairs())
    def check(pair):
        P, Q = pair
        assert close(name, metric(P, Q), metric(Q, P))

    check()


@pytest.mark.parametrize("name", _property_params(NON_NEGATIVE))
def test_property_non_negative(name):
    metric = METRICS[name]

    @_settings(name)
    @given(pair=cloud_pairs())
    def check(pair):
        assert metric(*pair) >= 0.0

    check()


@pytest.mark.parametrize("name", _property_params(ZERO_ON_IDENTICAL))
def test_property_zero_on_identical_clouds(name):
    metric = METRICS[name]

    @_settings(name)
    @given(pair=cloud_pairs())
    def check(pair):
        P, _ = pair
        if name == "mtopdiv":
            assert metric(P, P) == pytest.approx(0.0, abs=ABS_TOL[name])
        else:
            assert metric(P, P) == 0.0
        assert close(name, metric(P, P[::-1].copy()), 0.0)

    check()


@pytest.mark.parametrize("name", _property_params(ZERO_ON_SAME_DISTRIBUTION))
def test_property_zero_on_the_same_empirical_distribution(name):
    """[P; P] has the same empirical distribution as P (for wasserstein: the sliced branch, unequal sizes)."""
    metric = METRICS[name]

    @_settings(name)
    @given(pair=cloud_pairs())
    def check(pair):
        P, _ = pair
        assert close(name, metric(P, np.vstack([P, P])), 0.0)

    check()


@FAST_SETTINGS
@given(pair=cloud_pairs())
def test_property_mmd_of_a_cloud_with_itself(pair):
    """The unbiased estimator is not 0 on identical clouds: mmd(P, P) = -(2/n)(1 - mean_{i!=j} k) <= 0."""
    P, _ = pair
    n = len(P)
    value = mmd(P, P)
    assert value <= 1e-15
    sigma = median_heuristic(P, P)
    K = np.exp(-(pdist(P) ** 2) / (2 * sigma**2))
    assert value == pytest.approx(-(2 / n) * (1 - K.mean()), rel=1e-9, abs=1e-12)
    assert -2.0 <= mmd(*pair) <= 2.0


@FAST_SETTINGS
@given(pair=cloud_pairs(equal_sizes=True))
def test_property_wasserstein_exact_branch(pair):
    """Equal sizes: exact W1, bounded by the Hausdorff distance and the mean matched distance of any matching."""
    P, Q = pair
    value = wasserstein(P, Q)
    identity_matching = float(np.linalg.norm(P - Q, axis=1).mean())
    assert value <= identity_matching + 1e-12
    assert value >= METRICS["chamfer"](P, Q) / 2 - 1e-12  # each directed NN mean <= W1
