"""analysis.summary against independent computations: scikit-learn's AUROC on the raw resamples, brute-force ranks,
scipy's Friedman test on hand-built ranks, Demšar's (2006) Table 5 critical values and scipy's bootstrap."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from sklearn.metrics import roc_auc_score

from analysis.summary import (
    attach_collapse,
    cluster_bootstrap_mean,
    collapsed_trials,
    metric_ranking,
    nemenyi_cd,
    robustness,
    separation_summary,
    trial_separation,
)

CLASSES = ["cat", "dog", "car", "ship"]


def _p_below(b, o):
    return float(np.mean([(x < y) + 0.5 * (x == y) for x in b for y in o]))


def _rows(model, tc, aug, seed, metric, values, size=40, role=True):
    """Score rows of one trial and metric from raw resampled values per eval class (brute-force p and means)."""
    rows = []
    for c, v in values.items():
        r = {
            "model": model,
            "train_class": tc,
            "augmentation": aug,
            "seed": seed,
            "eval_class": c,
            "metric": metric,
            "mean": float(np.mean(v)),
            "std": float(np.std(v, ddof=1)),
            "ci_low": float(np.min(v)),
            "ci_high": float(np.max(v)),
            "n_resamples": len(v),
            "sample_size": size,
            "p_baseline_below": np.nan if c == tc else _p_below(values[tc], v),
            "run_id": f"{model}-{tc}-{aug}-{seed}",
        }
        if role:
            r["role"] = "baseline" if c == tc else "other"
        rows.append(r)
    return rows


def _random_scores(seed=0, models=("simclr",), augs=("none", "blur"), seeds=(0, 1), metrics=("a", "b", "c")):
    rng = np.random.default_rng(seed)
    rows, raw = [], {}
    for model, tc, aug, s, m in itertools.product(models, CLASSES, augs, seeds, metrics):
        shift = {"a": 1.0, "b": 0.4, "c": 0.0}.get(m, 0.2) * (0.5 if aug != "none" else 1.0)
        values = {c: rng.normal(0 if c == tc else shift, 1, size=30) for c in CLASSES}
        raw[(model, tc, aug, s, m)] = values
        rows += _rows(model, tc, aug, s, m, values)
    return pd.DataFrame(rows), raw


def test_trial_auroc_is_sklearn_one_vs_rest_auroc_and_rank_is_brute_force():
    scores, raw = _random_scores()
    t = trial_separation(scores).set_index(["model", "train_class", "augmentation", "seed", "metric"])
    for key, values in raw.items():
        tc = key[1]
        base = values[tc]
        others = np.concatenate([v for c, v in values.items() if c != tc])
        y = np.r_[np.ones(len(base)), np.zeros(len(others))]
        expected = roc_auc_score(y, -np.r_[base, others])  # baseline nearer = "positive"
        assert t.loc[key, "auroc"] == pytest.approx(expected, abs=1e-12)
        means = {c: np.mean(v) for c, v in values.items()}
        assert t.loc[key, "baseline_rank"] == 1 + sum(means[c] <= means[tc] for c in values if c != tc)
        p = {c: _p_below(base, v) for c, v in values.items() if c != tc}
        assert t.loc[key, "hardest_class"] == min(p, key=p.get)


def test_role_decides_which_rows_are_other_classes():
    scores, _ = _random_scores(augs=("none",), seeds=(0,), metrics=("a",))
    # mark one class as in-distribution (multi-class training): it must not enter the summary over other classes
    marked = scores.assign(role=np.where(scores["eval_class"] == "ship", "in_distribution", scores["role"]))
    marked = marked[marked["train_class"] != "ship"]
    t = trial_separation(marked).set_index("train_class")
    for tc in ["cat", "dog", "car"]:
        sub = marked[(marked.train_class == tc) & (marked.role == "other")]
        assert t.loc[tc, "auroc"] == pytest.approx(sub["p_baseline_below"].mean())
    # without a role column: eval_class != train_class
    plain = trial_separation(scores.drop(columns="role")).set_index("train_class")
    sub = scores[(scores.train_class == "cat") & (scores.eval_class != "cat")]
    assert plain.loc["cat", "auroc"] == pytest.approx(sub["p_baseline_below"].mean())


def _block_scores(auroc: np.ndarray, metrics: list[str]) -> pd.DataFrame:
    """Scores whose trial AUROC is exactly ``auroc[block, metric]``: one other class with that p_baseline_below."""
    rows = []
    for b, row in enumerate(auroc):
        for m, a in zip(metrics, row, strict=True):
            common = {
                "model": "m",
                "train_class": f"t{b}",
                "augmentation": "none",
                "seed": 0,
                "metric": m,
                "n_resamples": 10,
                "sample_size": 20,
                "run_id": f"r{b}",
                "std": 0.1,
                "ci_low": 0,
                "ci_high": 1,
            }
            rows.append({**common, "eval_class": f"t{b}", "mean": 0.0, "p_baseline_below": np.nan})
            rows.append({**common, "eval_class": "x", "mean": 1.0, "p_baseline_below": a})
    return pd.DataFrame(rows)


def test_metric_ranking_friedman_matches_scipy_on_hand_built_ranks():
    metrics = ["hausdorff", "mtopdiv", "mmd", "energy"]
    # hand-built ranks per block (1 = best = highest AUROC), with a tie in the last block
    ranks = np.array([[1, 2, 3, 4], [1, 3, 2, 4], [2, 1, 3, 4], [1, 2, 4, 3], [1, 2, 3, 4], [1.5, 1.5, 3, 4]])
    auroc = 1 - ranks / 10
    out = metric_ranking(_block_scores(auroc, metrics))
    assert list(out["metric"]) == ["hausdorff", "mtopdiv", "mmd", "energy"]
    assert out["mean_rank"].to_numpy() == pytest.approx(ranks.mean(axis=0))
    stat, p = scipy.stats.friedmanchisquare(*ranks.T)
    assert out.attrs["friedman_statistic"] == pytest.approx(stat)
    assert out.attrs["friedman_p"] == pytest.approx(p)
    assert out.attrs["n_blocks"] == 6 and out.attrs["k"] == 4
    # by baseline rank (lower is better) on the same frame: every block has rank 1, all metrics tie
    tied = metric_ranking(_block_scores(auroc, metrics), by="baseline_rank")
    assert tied["mean_rank"].to_numpy() == pytest.approx([2.5] * 4)
    assert math.isnan(tied.attrs["friedman_p"]) and not tied["differs_from_best"].any()


@pytest.mark.parametrize("k,q", [(2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728), (6, 2.850), (8, 3.031), (10, 3.164)])
def test_nemenyi_cd_matches_demsar_table_5a(k, q):
    n = 20
    assert nemenyi_cd(k, n) == pytest.approx(q * math.sqrt(k * (k + 1) / (6 * n)), rel=1e-3)


def test_ranking_cd_agrees_with_scikit_posthocs_nemenyi():
    rng = np.random.default_rng(3)
    k, n = 5, 30
    auroc = rng.normal(size=(n, k)) + np.linspace(1.5, 0, k)
    metrics = [f"m{i}" for i in range(k)]
    out = metric_ranking(_block_scores(auroc, metrics))
    cd = out.attrs["cd"]
    assert cd == pytest.approx(2.728 * math.sqrt(k * (k + 1) / (6 * n)), rel=1e-3)
    r = out.set_index("metric")["mean_rank"]
    pv = out.attrs["pvalues"]
    for a, b in itertools.combinations(metrics, 2):
        gap = abs(r[a] - r[b])
        if abs(gap - cd) > 0.02:  # away from the boundary the CD and the p-value say the same
            assert (gap > cd) == (pv[a][b] < 0.05), (a, b, gap, cd, pv[a][b])
    assert out["differs_from_best"].iloc[-1] and not out["differs_from_best"].iloc[0]
    con = metric_ranking(_block_scores(auroc, metrics), posthoc="conover")
    assert all(0 <= p <= 1 for row in con.attrs["pvalues"].values() for p in row.values() if not math.isnan(p))


def test_ranking_takes_the_largest_size_by_default_and_rejects_bad_arguments():
    a = _block_scores(np.array([[0.9, 0.5, 0.7], [0.8, 0.6, 0.7]]), ["x", "y", "z"])
    b = _block_scores(np.array([[0.5, 0.9, 0.7], [0.6, 0.8, 0.7]]), ["x", "y", "z"]).assign(sample_size=50)
    both = pd.concat([a, b])
    assert metric_ranking(both).attrs["sample_size"] == 50
    assert metric_ranking(both)["metric"].iloc[0] == "y"
    assert metric_ranking(both, sample_size=20)["metric"].iloc[0] == "x"
    with pytest.raises(ValueError, match="sample_size=7"):
        metric_ranking(both, sample_size=7)
    with pytest.raises(ValueError, match="by must be"):
        metric_ranking(both, by="mean")


def test_cluster_bootstrap_with_one_member_per_cluster_is_the_ordinary_bootstrap():
    v = np.random.default_rng(5).normal(size=40)
    lo, hi = cluster_bootstrap_mean(pd.Series(v), pd.Series(range(40)), n_boot=20000)
    ref = scipy.stats.bootstrap((v,), np.mean, n_resamples=20000, method="percentile", random_state=1)
    assert lo == pytest.approx(ref.confidence_interval.low, abs=0.03)
    assert hi == pytest.approx(ref.confidence_interval.high, abs=0.03)
    assert cluster_bootstrap_mean(pd.Series([0.7]), pd.Series(["a"])) == (0.7, 0.7)


def test_cluster_bootstrap_resamples_clusters_not_members():
    # two clusters, members identical within each: the statistic can only be 0, 0.5 or 1
    v = pd.Series([0.0, 0.0, 0.0, 1.0, 1.0])
    lo, hi = cluster_bootstrap_mean(v, pd.Series(["a", "a", "a", "b", "b"]), n_boot=4000, ci=0.9)
    assert (lo, hi) == (0.0, 1.0)


def test_separation_summary_rows_hardest_pair_and_best():
    scores, _ = _random_scores()
    s = separation_summary(scores, n_boot=500)
    assert len(s) == 3 * 2  # metrics x augmentations (one model, one size)
    t = trial_separation(scores)
    for r in s.itertuples():
        g = t[(t.metric == r.metric) & (t.augmentation == r.augmentation)]
        assert r.n_trials == len(g) == 8
        assert r.auroc_mean == pytest.approx(g["auroc"].mean())
        assert r.auroc_ci_low <= r.auroc_mean <= r.auroc_ci_high
        assert r.share_rank1 == pytest.approx((g["baseline_rank"] == 1).mean())
        sub = scores[(scores.metric == r.metric) & (scores.augmentation == r.augmentation) & (scores.role == "other")]
        p = sub.groupby(["train_class", "eval_class"])["p_baseline_below"].mean()
        assert (r.hardest_train_class, r.hardest_class) == p.idxmin() and r.hardest_p == pytest.approx(p.min())
    best = s[s.best]
    assert set(best["metric"]) == {"a"} and len(best) == 2


def test_robustness_pairs_against_none():
    scores, _ = _random_scores()
    rob = robustness(scores, n_boot=500)
    t = trial_separation(scores).set_index(["train_class", "seed", "metric", "augmentation"])["auroc"]
    for r in rob.itertuples():
        assert r.augmentation == "blur" and r.n_pairs == 8
        deltas = [t[(tc, s, r.metric, "blur")] - t[(tc, s, r.metric, "none")] for tc in CLASSES for s in (0, 1)]
        assert r.delta_mean == pytest.approx(np.mean(deltas))
        assert r.delta_ci_low <= r.delta_mean <= r.delta_ci_high
    assert rob.set_index("metric").loc["a", "delta_mean"] < 0  # the shift halves under blur


def test_exclude_collapsed_needs_and_uses_the_diagnostics():
    scores, _ = _random_scores(augs=("none",), seeds=(0,))
    with pytest.raises(ValueError, match="attach_collapse"):
        separation_summary(scores, exclude_collapsed=True)
    runs = pd.DataFrame(
        {
            "run_id": sorted(set(scores["run_id"])),
            "trial_key": sorted(set(scores["run_id"])),
            "embedding.std": [0.001, 0.2, 0.2, 0.2],
            "embedding.rankme": [1.0, 10, 10, 10],
            "embedding.dim": [16.0] * 4,
        }
    )
    assert list(collapsed_trials(runs)["run_id"]) == [runs["run_id"][0]]
    with_c = attach_collapse(scores, runs)
    kept = separation_summary(with_c, exclude_collapsed=True, n_boot=200)
    assert set(kept["n_trials"]) == {3}
    assert metric_ranking(with_c, exclude_collapsed=True).attrs["n_blocks"] == 3
