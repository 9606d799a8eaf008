"""Out-of-distribution detection metrics against scikit-learn and hand computations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from experiments.metrics.detection import class_means, detection_metrics, fpr_at_tpr, nc_accuracy, nearest_class_mean


@pytest.mark.parametrize("seed, ties", [(0, False), (1, True), (2, True)])
def test_auroc_and_aupr_equal_sklearn(seed, ties):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0, 1, 40), rng.normal(0.7, 1, 25)
    if ties:
        a, b = np.round(a), np.round(b)
    got = detection_metrics(a, b)
    y = np.r_[np.zeros(len(a)), np.ones(len(b))]
    s = np.r_[a, b]
    assert got["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert got["aupr_out"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert got["aupr_in"] == pytest.approx(average_precision_score(1 - y, -s), abs=1e-12)


def test_fpr95_by_hand_and_by_brute_force():
    inside = np.arange(1, 21, dtype=float)  # 20 in-distribution scores 1..20
    out = np.array([0.5, 18.5, 19.0, 19.5, 25.0])  # accepted at t = 19 (19/20 = 95 % of inside): 0.5, 18.5, 19.0
    assert fpr_at_tpr(inside, out) == pytest.approx(3 / 5)
    rng = np.random.default_rng(3)
    for _ in range(20):
        a, b = np.round(rng.normal(0, 1, 33), 1), np.round(rng.normal(1, 1, 17), 1)
        # brute force: the smallest threshold among the scores accepting >= 95 % of a
        t = min(x for x in np.r_[a, b] if np.mean(a <= x) >= 0.95)
        assert fpr_at_tpr(a, b) == pytest.approx(np.mean(b <= t))


def test_nearest_class_mean_and_accuracy_by_brute_force():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(30, 4)) + np.repeat(np.eye(4)[:3] * 5, 10, axis=0)
    labels = np.repeat([7, 3, 5], 10)
    test = rng.normal(size=(12, 4)) * 3
    _means, classes = class_means(train, labels)
    assert list(classes) == [3, 5, 7]
    scores, pred = nearest_class_mean(train, labels, test)
    for i, x in enumerate(test):
        d = {c: np.linalg.norm(x - train[labels == c].mean(axis=0)) for c in (3, 5, 7)}
        best = min(d, key=d.get)
        assert pred[i] == best and scores[i] == pytest.approx(d[best])
    assert nc_accuracy(pred, pred) == 1.0 and nc_accuracy(np.array([1, 2]), np.array([1, 3])) == 0.5


@pytest.mark.parametrize("a, b, needle", [([], [1.0], "both groups"), ([1.0], [np.nan], "NaN")])
def test_bad_scores_raise(a, b, needle):
    with pytest.raises(ValueError, match=needle):
        detection_metrics(np.array(a), np.array(b))
