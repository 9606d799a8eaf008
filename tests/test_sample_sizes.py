"""score.sample_size as a list: validation, and every size scored in one bootstrap with the draws of a single-size
run (common random numbers: the draws are a function of the score seed, the class and the size)."""

import numpy as np
import pandas as pd
import pytest

from sweeper.bootstrap import bootstrap_scores
from sweeper.config import ConfigError, parse_config, preflight
from sweeper.scoring import ScoreSettings, score_clouds


def _cfg(sizes, **dataset):
    raw = {"name": "t", "experiment": "e", "grid": {"model": ["simclr"], "train_class": [0]}}
    raw.update(score={"sample_size": sizes}, dataset={"name": "digits", **dataset})
    return parse_config(raw)


def test_list_sizes_validate_and_the_first_too_large_size_is_named():
    assert _cfg([20, 40]).score.sample_sizes == [20, 40]
    assert _cfg(30).score.sample_sizes == [30]
    with pytest.raises(ConfigError, match="sample_size"):
        _cfg([20, 20])
    with pytest.raises(ConfigError, match="sample_size"):
        _cfg([1, 20])
    cfg = _cfg([20, 60, 500], max_train_per_class=100, max_test_per_class=50)
    with pytest.raises(ConfigError, match="sample_size=60 is larger than the test cloud of class '0'"):
        preflight(cfg)


@pytest.fixture(scope="module")
def clouds():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(30, 4))
    return ref, {"a": rng.normal(size=(25, 4)), "b": rng.normal(1.0, 1, size=(20, 4))}


def test_several_sizes_equal_separate_single_size_runs(local_ray, clouds):
    ref, cl = clouds
    kw = dict(n_resamples=12, seed=3, workers=2)
    metrics = ["hausdorff", "chamfer"]
    summary, raw = bootstrap_scores(ref, cl, metrics, sample_size=[5, 9], **kw)
    assert sorted(set(raw["sample_size"])) == [5, 9] and sorted(set(summary["sample_size"])) == [5, 9]
    for n in (5, 9):
        one_s, one_r = bootstrap_scores(ref, cl, metrics, sample_size=n, **kw)
        got = raw[raw["sample_size"] == n].drop(columns="sample_size").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, one_r.drop(columns="sample_size").reset_index(drop=True))
        s = summary[summary["sample_size"] == n].reset_index(drop=True)
        pd.testing.assert_frame_equal(s, one_s.reset_index(drop=True))
    with pytest.raises(ValueError, match="sample_size=21"):
        bootstrap_scores(ref, cl, metrics, sample_size=[5, 21], **kw)


def test_score_clouds_gives_each_size_its_own_separation(local_ray, clouds):
    ref, cl = clouds
    settings = ScoreSettings(metrics=("hausdorff",), n_resamples=10, sample_size=(5, 9), seed=1, workers=1)
    res = score_clouds(ref, cl, "a", settings)
    t = res.table
    assert len(t) == 2 * 2  # two classes x two sizes
    assert t.loc[t.eval_class == "b", "p_baseline_below"].notna().all()
    assert {"baseline_rank.hausdorff", "baseline_rank.hausdorff.n9", "score.hausdorff.b.n9.mean"} <= set(res.summary)
    for n in (5, 9):
        raw = res.raw[res.raw.sample_size == n]
        b = raw[raw.eval_class == "a"]["value"].to_numpy()
        o = raw[raw.eval_class == "b"]["value"].to_numpy()
        p = np.mean([(x < y) + 0.5 * (x == y) for x in b for y in o])
        row = t[(t.eval_class == "b") & (t.sample_size == n)]
        assert float(row["p_baseline_below"].iloc[0]) == pytest.approx(p)
