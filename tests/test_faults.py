"""Fault injection with real processes: a trial worker killed mid-training, a driver killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import tiny_config
from mlflow.tracking import MlflowClient

from sweeper.config import parse_config
from sweeper.tune import run_sweep

pytestmark = pytest.mark.slow

#: Epochs of a fault-injection trial: the kills below come after 2-3 logged epochs, so 7 or more are still to run
#: (each epoch checkpoints, ~0.3 s or more on 2 cores); more epochs only make the test slower (30-40 cost ~4 min).
EPOCHS = 10


def fault_config(tmp_path, name, epochs, train_classes, max_failures=1):
    """A sweep of simclr trials long enough (``epochs``) to be killed in the middle, checkpointing every epoch, as a
    plain mapping."""
    return tiny_config(
        tmp_path,
        name=name,
        experiment=f"{name}-exp",
        grid__model=["simclr"],
        grid__train_class=train_classes,
        grid__augmentation=["none"],
        train__epochs=epochs,
        train__batch_size=12,
        train__checkpoint_every_epochs=1,  # the kills below must find a checkpoint of every epoch
        score__n_resamples=3,
        score__metrics=["hausdorff"],
        tune__max_failures=max_failures,
    ).model_dump(mode="json")


def _children(client, experiment):
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return [], []
    runs = client.search_runs([exp.experiment_id])
    return (
        [r for r in runs if r.data.tags.get("sweeper.role") == "sweep"],
        [r for r in runs if r.data.tags.get("sweeper.role") == "trial"],
    )


def _wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _epochs_logged(client, run):
    return [m.step for m in client.get_metric_history(run.info.run_id, "loss")]


def test_killed_trial_worker_resumes_from_its_checkpoint_in_the_same_run(local_ray, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = parse_config(fault_config(tmp_path, "workerkill", epochs=EPOCHS, train_classes=["1"]))
    client = MlflowClient(uri)
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("code", run_sweep(cfg, uri)), daemon=True)
    thread.start()

    def training_started():
        _, children = _children(client, cfg.experiment)
        return bool(children) and max(_epochs_logged(client, children[0]), default=0) >= 3

    _wait_for(training_started, 300, "the trial to log 3 epochs")
    workers = [
        p
        for p in psutil.Process().children(recursive=True)  # this test's own Ray only
        if "ImplicitFunc" in " ".join(p.cmdline())
    ]
    assert workers, "no trial worker process found"
    for proc in workers:
        proc.send_signal(signal.SIGKILL)
    thread.join(600)
    assert result.get("code") == 0

    parents, children = _children(client, cfg.experiment)
    assert len(parents) == 1 and len(children) == 1
    run = children[0]
    assert run.info.status == "FINISHED"
    resumed = int(run.data.tags["sweeper.resumed_from_epoch"])
    assert 1 <= resumed < EPOCHS, "the retried trial must continue from a checkpoint, not from scratch"
    assert set(_epochs_logged(client, run)) == set(range(1, EPOCHS + 1))
    assert {a.path for a in client.list_artifacts(run.info.run_id, "scores")} >= {"scores/scores.parquet"}


def test_sigkilled_driver_is_resumed_without_duplicates_or_rerunning_finished_trials(tmp_path):
    raw = fault_config(tmp_path, "driverkill", epochs=EPOCHS, train_classes=["0", "1"])
    raw["resources"]["bootstrap_workers"] = 1
    config = tmp_path / "driverkill.yaml"
    config.write_text(yaml.safe_dump(raw))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    env.pop("RAY_ADDRESS", None)
    exe = str(Path(sys.executable).with_name("sweeper"))
    driver = subprocess.Popen(
        [exe, "run", str(config)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    client = MlflowClient(uri)

    def one_finished_one_training():
        _, children = _children(client, "driverkill-exp")
        done = [r for r in children if r.info.status == "FINISHED"]
        busy = [r for r in children if r.info.status == "RUNNING" and len(_epochs_logged(client, r)) >= 2]
        return len(done) == 1 and len(busy) == 1

    try:
        _wait_for(one_finished_one_training, 400, "one finished trial and one in training")
        first_done = next(r for r in _children(client, "driverkill-exp")[1] if r.info.status == "FINISHED")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started
        driver.wait(60)
    time.sleep(2)
    parents, children = _children(client, "driverkill-exp")
    assert any(r.info.status == "RUNNING" for r in children), "the kill should leave a trial run RUNNING"

    resume = subprocess.run(
        [exe, "resume", "driverkill", "--storage-path", str(tmp_path / "ray_results")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resume.returncode == 0, resume.stderr[-3000:]
    parents, children = _children(client, "driverkill-exp")
    assert len(parents) == 1 and len(children) == 2, "no duplicate child runs"
    assert all(r.info.status == "FINISHED" for r in parents + children), "no run left RUNNING or FAILED"
    again = next(r for r in children if r.info.run_id == first_done.info.run_id)
    assert again.info.end_time == first_done.info.end_time, "a finished trial must not be re-run"
    other = next(r for r in children if r.info.run_id != first_done.info.run_id)
    assert set(_epochs_logged(client, other)) == set(range(1, EPOCHS + 1))
