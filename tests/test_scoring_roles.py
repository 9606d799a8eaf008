"""Roles in the score table and the summaries over ``role == other`` (issue 19, #1 and #4), recomputed
independently (brute-force k-NN, scikit-learn AUROC, pairwise comparisons) from synthetic clouds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist
from sklearn.metrics import roc_auc_score

from analysis.roles import role_of
from analysis.tables import separation as separation_frame
from sweeper.scoring import SCORE_COLUMNS, ScoreSettings, score_trial, trial_score_seed


def test_role_rule_single_and_multi_class():
    assert [role_of(c, "1") for c in ("1", "0", "2", "novelty", "gaussian_noise")] == ["baseline"] + ["other"] * 4
    assert role_of("in_distribution", "1") == "in_distribution"
    multi = {c: role_of(c, "0+1") for c in ("0+1", "0", "1", "2", "novelty", "in_distribution", "10")}
    assert multi == {
        "0+1": "baseline",
        "0": "in_distribution",
        "1": "in_distribution",
        "2": "other",
        "novelty": "other",
        "in_distribution": "in_distribution",
        "10": "other",
    }


def test_score_seed_shared_or_per_trial():
    assert trial_score_seed(3, "model=a/seed=0") == trial_score_seed(3, "model=a/seed=1") == 3
    a, b = trial_score_seed("per_trial", "model=a/seed=0"), trial_score_seed("per_trial", "model=a/seed=1")
    assert a != b and a == trial_score_seed("per_trial", "model=a/seed=0") and 0 <= a < 2**63
    with pytest.raises(ValueError, match="per_trial"):
        trial_score_seed("shared", "k")


def _clouds(seed=0):
    rng = np.random.default_rng(seed)
    shift = {"0": 0.0, "1": 0.0, "2": 1.0, "3": 2.5}
    train = {c: rng.normal(size=(30, 5)) + shift[c] for c in ("0", "1")}
    test = {c: rng.normal(size=(20 if c != "3" else 14, 5)) + s for c, s in shift.items()}
    reference = np.concatenate([train["0"], train["1"]])
    labels = np.r_[np.zeros(30, int), np.ones(30, int)]
    return reference, labels, test


def _knn_score(reference, x, k):
    return np.sort(cdist(x, reference), axis=1)[:, :k].mean(axis=1)


def _p_below(b, o):
    return float(np.mean(b[:, None] < o[None, :]) + 0.5 * np.mean(b[:, None] == o[None, :]))


def test_single_class_trial_has_no_nc_accuracy_row():
    reference, _, test = _clouds()
    s = ScoreSettings(metrics=("auroc", "nc_accuracy"), n_resamples=10, sample_size=8)
    one = score_trial(reference[:30], np.zeros(30, int), test, {}, ["0"], [], {"0": 0, "1": 1, "2": 2, "3": 3}, s)
    assert "nc_accuracy" not in set(one.table["metric"]) and "score.nc_accuracy.in_distribution.mean" not in one.summary
    assert set(one.table["eval_class"]) == {"novelty"} and (one.table["role"] == "other").all()


@pytest.fixture(scope="module")
def multi(local_ray):
    reference, labels, test = _clouds()
    rng = np.random.default_rng(9)
    anomalies = {"gaussian_noise": rng.normal(size=(16, 5)) * 3}
    s = ScoreSettings(
        metrics=("hausdorff", "mmd", "knn_auroc", "auroc", "nc_accuracy"),
        n_resamples=60,
        sample_size=8,
        seed=5,
        knn_k=3,
    )
    scores = score_trial(reference, labels, test, anomalies, ["0", "1"], [], {c: int(c) for c in test}, s)
    return reference, labels, test, scores


def test_every_row_has_its_role(multi):
    *_, scores = multi
    t = scores.table
    assert list(t.columns) == SCORE_COLUMNS[3:]
    expected = {"0+1": "baseline", "0": "in_distribution", "1": "in_distribution", "2": "other", "3": "other"}
    expected |= {"novelty": "other", "gaussian_noise": "other", "in_distribution": "in_distribution"}
    assert dict(zip(t["eval_class"], t["role"], strict=True)) == expected
    assert set(t.loc[t.metric == "knn_auroc", "eval_class"]) == {"2", "3"}  # never a subset of the baseline
    assert t.loc[t.role != "other", "p_baseline_below"].isna().all()


def test_knn_summary_is_the_mean_over_other_classes(multi):
    reference, _, test, scores = multi
    normal = _knn_score(reference, np.concatenate([test["0"], test["1"]]), 3)
    expected = {}
    for c in ("2", "3"):
        anomalous = _knn_score(reference, test[c], 3)
        y = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
        expected[c] = roc_auc_score(y, np.r_[normal, anomalous])
    t = scores.table[scores.table.metric == "knn_auroc"].set_index("eval_class")
    for c, v in expected.items():
        assert t.loc[c, "mean"] == pytest.approx(v, abs=1e-12)
    assert scores.summary["knn_auroc"] == pytest.approx(np.mean(list(expected.values())), abs=1e-12)


def test_separation_summaries_are_over_other_rows(multi):
    *_, scores = multi
    raw, t = scores.raw, scores.table
    for metric in ("hausdorff", "mmd"):
        r = raw[raw.metric == metric]
        base = r.loc[r.eval_class == "0+1", "value"].to_numpy()
        others = {c: r.loc[r.eval_class == c, "value"].to_numpy() for c in ("2", "3")}
        rank = 1 + sum(v.mean() <= base.mean() for v in others.values())
        assert scores.summary[f"baseline_rank.{metric}"] == rank
        pooled = np.concatenate(list(others.values()))
        y = np.r_[np.zeros(len(base)), np.ones(len(pooled))]
        assert scores.summary[f"baseline_auroc.{metric}"] == pytest.approx(roc_auc_score(y, np.r_[base, pooled]))
        for c, v in others.items():
            assert scores.summary[f"p_baseline_below.{metric}.{c}"] == pytest.approx(_p_below(base, v))
            row = t[(t.metric == metric) & (t.eval_class == c)]
            assert row["p_baseline_below"].item() == pytest.approx(_p_below(base, v))
        assert not any(k.startswith(f"p_baseline_below.{metric}.") and k[-1] in "01" for k in scores.summary)
    # the analysis table on the same resamples: ranks and P(baseline < c) over the other rows only
    frame = raw.assign(model="m", train_class="0+1", augmentation="none", seed=0)
    sep = separation_frame(frame)
    assert set(sep["eval_class"]) == {"0+1", "2", "3"}
    for metric, g in sep.groupby("metric"):
        assert g["baseline_rank"].iloc[0] == scores.summary[f"baseline_rank.{metric}"]
        for c in ("2", "3"):
            want = scores.summary[f"p_baseline_below.{metric}.{c}"]
            assert g.loc[g.eval_class == c, "p_baseline_below"].item() == pytest.approx(want)


def test_nc_accuracy_with_several_classes(multi):
    reference, labels, test, scores = multi
    means = np.stack([reference[labels == k].mean(axis=0) for k in (0, 1)])
    x = np.concatenate([test["0"], test["1"]])
    truth = np.r_[np.zeros(len(test["0"])), np.ones(len(test["1"]))]
    want = float(np.mean(cdist(x, means).argmin(axis=1) == truth))
    row = scores.table[scores.table.metric == "nc_accuracy"]
    assert row["eval_class"].item() == "in_distribution" and row["role"].item() == "in_distribution"
    assert row["mean"].item() == pytest.approx(want)


def test_median_is_the_resample_median_and_inside_the_interval(multi):
    *_, scores = multi
    t = scores.table[scores.table.metric.isin(["hausdorff", "mmd"])]
    med = scores.raw.groupby(["eval_class", "metric"])["value"].median()
    for r in t.itertuples():
        assert r.median == pytest.approx(med[(r.eval_class, r.metric)], rel=1e-12, abs=1e-15)
        assert r.ci_low <= r.median <= r.ci_high
    knn = scores.table[scores.table.metric == "knn_auroc"]
    assert knn["median"].between(0, 1).all()


def test_a_skewed_resample_distribution_keeps_the_median_inside_but_not_the_mean(local_ray):
    """One far outlier among 400 points, 4 drawn per resample: ~1 % of the resamples hold it. The percentile
    interval (the resample distribution's 2.5-97.5 %) then excludes the mean; the median stays inside."""
    rng = np.random.default_rng(11)
    reference = rng.normal(size=(200, 3)) * 0.01
    cloud = rng.normal(size=(400, 3)) * 0.01
    cloud[17] = 1000.0
    s = ScoreSettings(metrics=("hausdorff",), n_resamples=400, sample_size=4, seed=2)
    t = score_trial(reference, np.zeros(200, int), {"a": reference.copy(), "b": cloud}, {}, ["a"], [], {}, s).table
    row = t[t.eval_class == "b"].iloc[0]
    assert row["mean"] > row["ci_high"]  # the mean is outside its own percentile interval
    assert row["ci_low"] <= row["median"] <= row["ci_high"]
    assert isinstance(t, pd.DataFrame) and set(t["role"]) == {"baseline", "other"}
