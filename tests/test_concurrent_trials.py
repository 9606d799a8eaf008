"""Sixteen trials at once on the default local (sqlite) MLflow store lose no write: a file of its own, so that
pytest-xdist's ``--dist loadfile`` can run it beside the tracking-server sweeps."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from test_tracking_servers import tiny

from sweeper.tune import run_sweep


@pytest.mark.slow
def test_sixteen_concurrent_trials_lose_no_write_on_the_default_local_store(local_ray, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = tiny(
        tmp_path,
        "concurrent",
        grid__model=["simclr", "barlow_twins"],
        grid__train_class=["0", "1"],
        grid__augmentation=["none", "gaussian_noise"],
        grid__seed=[0, 1],
        resources__cpus_per_trial=0.0625,
        resources__cpus_per_bootstrap_worker=0.0625,
        train__epochs=3,
    )
    assert len(cfg.trials()) == 16
    assert run_sweep(cfg, uri) == 0
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(cfg.experiment)
    children = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("sweeper.role") == "trial"]
    assert len(children) == 16 and all(r.info.status == "FINISHED" for r in children)
    for run in children:
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3]
        assert len([k for k in run.data.metrics if k.startswith("score.")]) == 3 * 2
        assert {a.path for a in client.list_artifacts(run.info.run_id, "scores")} >= {
            "scores/scores.parquet",
            "scores/bootstrap.parquet",
        }
