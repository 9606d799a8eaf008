"""Per-trial overhead cuts keep results: in-process scoring, ``bootstrap_workers: auto``, the checkpoint interval,
trial workers reused between trials; two 1-CPU trials side by side on 2 cores."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config
from mlflow.tracking import MlflowClient
from scipy.spatial.distance import cdist, directed_hausdorff

from experiments.metrics import METRICS
from sweeper.bootstrap import bootstrap_scores, draw_indices
from sweeper.bootstrap_plan import IN_PROCESS_MAX_SECONDS, bootstrap_workers, estimated_bootstrap_seconds
from sweeper.checkpointing import CheckpointPolicy
from sweeper.tune import placement, run_sweep


def _clouds():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(40, 5))
    return ref, {"a": rng.normal(size=(30, 5)), "b": rng.normal(0.7, size=(35, 5))}


def test_in_process_scoring_equals_one_ray_worker_bit_for_bit_and_a_direct_loop(local_ray):
    ref, clouds = _clouds()
    metrics = ["hausdorff", "euclidean", "mtopdiv", "energy"]
    kw = dict(n_resamples=30, sample_size=8, seed=4)
    s0, r0 = bootstrap_scores(ref, clouds, metrics, workers=0, **kw)
    s1, r1 = bootstrap_scores(ref, clouds, metrics, workers=1, **kw)
    pd.testing.assert_frame_equal(s0, s1, check_exact=True)
    pd.testing.assert_frame_equal(r0, r1, check_exact=True)
    _, r2 = bootstrap_scores(ref, clouds, metrics, workers=2, tasks_per_worker=3, **kw)
    pd.testing.assert_frame_equal(r0, r2, check_exact=False, rtol=1e-12, atol=0)
    for pos, (name, cloud) in enumerate(clouds.items()):
        ri, ei = draw_indices(len(ref), len(cloud), 30, 8, seed=4, class_position=pos)
        got = r0[r0.eval_class == name].pivot(index="resample", columns="metric", values="value")
        hd = [
            max(directed_hausdorff(ref[a], cloud[b])[0], directed_hausdorff(cloud[b], ref[a])[0])
            for a, b in zip(ri, ei, strict=True)
        ]
        np.testing.assert_allclose(got["hausdorff"], hd, rtol=1e-12)
        np.testing.assert_allclose(
            got["euclidean"], [cdist(ref[a], cloud[b]).sum() for a, b in zip(ri, ei, strict=True)], rtol=1e-12
        )
        np.testing.assert_allclose(
            got["mtopdiv"], [METRICS["mtopdiv"](ref[a], cloud[b]) for a, b in zip(ri, ei, strict=True)]
        )


def test_auto_scores_small_bootstraps_in_process_and_reserves_a_worker_for_large_ones(tmp_path):
    small = tiny_config(tmp_path, resources={"cpus_per_trial": 1, "gpus_per_trial": 0, "bootstrap_workers": "auto"})
    assert small.resources.bootstrap_workers == "auto"
    assert bootstrap_workers(small) == 0
    assert placement(small).bundles == [{"CPU": 1.0}]
    large = tiny_config(
        tmp_path,
        resources={"cpus_per_trial": 1, "gpus_per_trial": 0},  # auto is the default
        score={"metrics": ["mtopdiv", "hausdorff"], "n_resamples": 1000, "sample_size": 100},
    )
    # proj18's scoring: 3 classes x 1000 resamples of MTopDiv at 100 + 100 points, ~11 ms each
    assert estimated_bootstrap_seconds(3, 1000, 100, ["mtopdiv"]) == pytest.approx(3 * 1000 * 10.9e-3)
    assert estimated_bootstrap_seconds(3, 1000, 100, ["mtopdiv"]) > IN_PROCESS_MAX_SECONDS
    assert bootstrap_workers(large) == 1
    assert placement(large).bundles == [{"CPU": 1.0}, {"CPU": 1.0}]
    fixed = tiny_config(tmp_path, resources={"cpus_per_trial": 1, "gpus_per_trial": 0, "bootstrap_workers": 3})
    assert bootstrap_workers(fixed) == 3 and len(placement(fixed).bundles) == 4
    in_process = large.model_copy(update={"resources": large.resources.model_copy(update={"bootstrap_workers": 0})})
    assert bootstrap_workers(in_process) == 0 and placement(in_process).bundles == [{"CPU": 1.0}]


def test_a_list_of_cloud_sizes_adds_their_costs():
    """``score.sample_size: [20, 40]`` (the README's demo command) is estimated as the sum of its sizes."""
    one = [estimated_bootstrap_seconds(10, 50, n, ["mtopdiv", "hausdorff"]) for n in (20, 40)]
    assert estimated_bootstrap_seconds(10, 50, [20, 40], ["mtopdiv", "hausdorff"]) == pytest.approx(sum(one))


def test_checkpoint_policy_persists_every_k_epochs_after_s_seconds_and_always_at_the_end():
    every2 = CheckpointPolicy(last_epoch=7, every_epochs=2, every_seconds=None)
    due = []
    for epoch in range(1, 8):
        if every2.due(epoch):
            every2.saved(epoch)
            due.append(epoch)
    assert due == [2, 4, 6, 7]
    only_end = CheckpointPolicy(last_epoch=5, every_epochs=None, every_seconds=3600)
    assert [e for e in range(1, 6) if only_end.due(e)] == [5]
    always = CheckpointPolicy(last_epoch=5, every_epochs=None, every_seconds=0)
    assert all(always.due(e) for e in range(1, 6))
    resumed = CheckpointPolicy(last_epoch=9, every_epochs=3, every_seconds=None, start_epoch=4)
    due = []
    for epoch in range(5, 10):
        if resumed.due(epoch):
            resumed.saved(epoch)
            due.append(epoch)
    assert due == [7, 9]
    with pytest.raises(ValueError, match="every_epochs"):
        CheckpointPolicy(3, 0, None)


def _trial_runs(uri, experiment):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("sweeper.role") == "trial"]


def _scores(uri, experiment):
    from analysis import load_scores

    cols = ["model", "augmentation", "eval_class", "metric"]
    return load_scores(experiment, tracking_uri=uri).drop(columns="run_id").sort_values(cols).reset_index(drop=True)


@pytest.mark.slow
def test_auto_trials_run_side_by_side_in_reused_workers_with_the_scores_of_one_worker_each(local_ray, tmp_path):
    grid = {"model": ["simclr"], "train_class": ["1"], "augmentation": ["none", "non_rigid", "gaussian_noise"]}
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    fast = tiny_config(tmp_path, name="fast", experiment="fast-exp", grid=grid, resources={"cpus_per_trial": 1})
    assert run_sweep(fast, uri) == 0
    runs = _trial_runs(uri, "fast-exp")
    assert len(runs) == 3
    spans = sorted((r.info.start_time, r.info.end_time) for r in runs)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans)), f"no two trials overlapped: {spans}"
    pids = [r.data.metrics["timing.pid"] for r in runs]
    assert len(set(pids)) < 3, "with 2 CPUs and 3 trials, a worker process must run a second trial"
    assert sum(r.data.metrics["timing.first_in_process"] for r in runs) == len(set(pids))

    # the trials that ran in a reused process, again each in a fresh process with a Ray bootstrap worker
    reused = sorted(r.data.params["augmentation"] for r in runs if r.data.metrics["timing.first_in_process"] == 0)
    assert reused
    slow = tiny_config(
        tmp_path,
        name="slow",
        experiment="slow-exp",
        grid={**grid, "augmentation": reused},
        resources={"cpus_per_trial": 1, "bootstrap_workers": 1},
        tune={"storage_path": str(tmp_path / "ray_results"), "max_failures": 0, "reuse_actors": False},
    )
    assert run_sweep(slow, uri) == 0
    assert {r.data.metrics["timing.first_in_process"] for r in _trial_runs(uri, "slow-exp")} == {1.0}
    fast_scores = _scores(uri, "fast-exp")
    fast_scores = fast_scores[fast_scores.augmentation.isin(reused)].reset_index(drop=True)
    pd.testing.assert_frame_equal(fast_scores, _scores(uri, "slow-exp"), check_exact=True)
