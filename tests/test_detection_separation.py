"""k-NN anomaly scores, AUROC and baseline separation against sklearn and brute-force loops."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.metrics import roc_auc_score

from experiments.metrics.detection import auroc, knn_auroc, knn_scores
from experiments.metrics.separation import separation


def test_knn_scores_equal_a_brute_force_sort():
    rng = np.random.default_rng(0)
    ref, q = rng.normal(size=(20, 3)), rng.normal(size=(7, 3))
    for k in (1, 5, 20):
        expect = np.sort(cdist(q, ref), axis=1)[:, :k].mean(axis=1)
        np.testing.assert_allclose(knn_scores(ref, q, k), expect, rtol=1e-12)


@pytest.mark.parametrize("k", [0, 21])
def test_knn_k_outside_the_reference_cloud_is_reported(k):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=f"knn k={k} must be between 1 and the reference cloud size \\(20 points\\)"):
        knn_scores(rng.normal(size=(20, 3)), rng.normal(size=(4, 3)), k)


def test_knn_rejects_bad_clouds():
    with pytest.raises(ValueError, match="NaN"):
        knn_scores(np.array([[0.0, np.nan]] * 3), np.zeros((2, 2)), 1)
    with pytest.raises(ValueError):
        knn_scores(np.zeros((3, 2)), np.zeros((2, 3)), 1)


def test_auroc_equals_sklearn_with_ties_and_vectorised():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 5, size=30).astype(float), rng.integers(1, 6, size=25).astype(float)
    expect = roc_auc_score([0] * 30 + [1] * 25, np.concatenate([a, b]))
    assert auroc(a, b) == pytest.approx(expect, abs=1e-12)
    batch_a, batch_b = rng.normal(size=(4, 10)), rng.normal(0.5, size=(4, 12))
    got = auroc(batch_a, batch_b, axis=-1)
    for i in range(4):
        assert got[i] == pytest.approx(roc_auc_score([0] * 10 + [1] * 12, np.r_[batch_a[i], batch_b[i]]))
    with pytest.raises(ValueError, match="both groups"):
        auroc(np.array([]), np.array([1.0]))


def test_knn_auroc_per_class_equals_sklearn_and_has_a_bca_interval():
    rng = np.random.default_rng(2)
    ref, normal = rng.normal(size=(40, 4)), rng.normal(size=(30, 4))
    others = {"near": rng.normal(0.3, size=(25, 4)), "far": rng.normal(8.0, size=(25, 4))}
    res = knn_auroc(ref, normal, others, k=5, n_resamples=300, seed=0)
    s_normal = knn_scores(ref, normal, 5)
    for name, cloud in others.items():
        s = knn_scores(ref, cloud, 5)
        assert res[name]["auroc"] == pytest.approx(roc_auc_score([0] * 30 + [1] * 25, np.r_[s_normal, s]))
    near = res["near"]
    assert near["ci_low"] < near["auroc"] < near["ci_high"] and 0 < near["std"] < 0.2
    far = res["far"]  # perfectly separated: BCa is undefined, the percentile interval is [1, 1]
    assert far["auroc"] == 1.0 and far["ci_low"] == far["ci_high"] == 1.0
    assert np.isnan(knn_auroc(ref, normal, others, k=5)["near"]["std"])


def test_separation_rank_probabilities_and_auroc_against_loops():
    rng = np.random.default_rng(3)
    values = {
        "base": rng.normal(1.0, size=50),
        "a": rng.normal(2.0, size=50),
        "b": rng.normal(0.5, size=40),
        "c": np.round(rng.normal(1.0, size=30), 1),
    }
    sep = separation(values, "base")
    means = {c: v.mean() for c, v in values.items()}
    assert sep.baseline_rank == 1 + sum(m < means["base"] for c, m in means.items() if c != "base")
    for c in ("a", "b", "c"):
        brute = np.mean([(x < y) + 0.5 * (x == y) for x in values["base"] for y in values[c]])
        assert sep.p_baseline_below[c] == pytest.approx(brute)
    pooled = np.concatenate([values[c] for c in ("a", "b", "c")])
    assert sep.auroc == pytest.approx(roc_auc_score([0] * 50 + [1] * len(pooled), np.r_[values["base"], pooled]))


def test_separation_ties_count_against_the_baseline_and_bad_input():
    same = {"base": np.ones(5), "other": np.ones(5)}
    sep = separation(same, "base")
    assert sep.baseline_rank == 2 and sep.p_baseline_below == {"other": 0.5} and sep.auroc == 0.5
    with pytest.raises(ValueError, match="baseline class 'x' not among"):
        separation(same, "x")
    with pytest.raises(ValueError, match="at least one other class"):
        separation({"base": np.ones(3)}, "base")
