"""A trial that Tune starts again after its MLflow run was closed FINISHED (the driver died in between) leaves the
run alone: no re-scoring, no second close, no second run."""

from __future__ import annotations

import time

import pytest
from conftest import tiny_config
from mlflow.tracking import MlflowClient

from sweeper import tracking
from sweeper.trial import run_trial


@pytest.mark.filterwarnings("ignore:`get_checkpoint` is meant to only be called")
def test_a_restarted_trial_whose_run_is_finished_does_nothing(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = tiny_config(tmp_path, grid__model=["simclr"], grid__augmentation=["none"])
    (spec,) = cfg.trials()
    client = MlflowClient(uri)
    exp = client.create_experiment("restart-exp")
    parent = client.create_run(exp).info.run_id
    done = tracking.trial_run(client, exp, parent, spec.key, "done", {})
    client.set_terminated(done, "FINISHED")
    before = client.get_run(done)
    time.sleep(0.01)
    # outside Tune, get_checkpoint() is None: the restart without a checkpoint, found by its trial key
    run_trial(
        {"trial": spec.to_dict()},
        sweep=cfg.model_dump(mode="json"),
        parent_run_id=parent,
        experiment_id=exp,
        tracking_uri=uri,
    )
    after = client.get_run(done)
    assert after.info.status == "FINISHED" and after.info.end_time == before.info.end_time
    assert after.data.params == before.data.params and after.data.metrics == before.data.metrics
    assert len(client.search_runs([exp])) == 2  # the parent and the one trial run
