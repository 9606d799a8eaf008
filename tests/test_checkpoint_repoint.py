"""A trial whose named checkpoint was deleted resumes from the newest one left (real Ray Tune, the session's Ray).

Tune deletes checkpoints beyond ``num_to_keep`` as soon as newer ones register but uploads its experiment state only
now and then, so after a driver kill the state may name a deleted checkpoint. Here the trial dies after its third
checkpoint, that checkpoint is deleted, and the sweep is restored: without the callback Tune's own restore fails the
trial; with :class:`sweeper.checkpointing.RepointMissingCheckpoint` it resumes from the second."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import ray.cloudpickle
from ray import tune

from sweeper.checkpointing import RepointMissingCheckpoint

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _counter(config):
    """Report steps 1..5 with a checkpoint each, resuming after the checkpointed step; die once after step 3."""
    start = 0
    if (ckpt := tune.get_checkpoint()) is not None:
        with ckpt.as_directory() as d:
            start = int(Path(d, "step").read_text())
    for step in range(start + 1, 6):
        with tempfile.TemporaryDirectory() as d:
            Path(d, "step").write_text(str(step))
            tune.report({"step": step, "start": start}, checkpoint=tune.Checkpoint.from_directory(d))
        marker = Path(config["marker"])
        if step == 3 and not marker.exists():
            marker.touch()
            raise RuntimeError("dies after its third checkpoint")


def _killed_then_restored(tmp_path: Path, name: str, callbacks: list):
    """Run the counter until it dies, delete its newest checkpoint, restore the experiment; the restored results."""
    tuner = tune.Tuner(
        tune.with_resources(_counter, {"cpu": 1}),
        param_space={"marker": str(tmp_path / f"{name}.died")},
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(tmp_path / "results"),
            callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=0),
            verbose=0,
        ),
    )
    assert tuner.fit().errors
    trial_dir = next((tmp_path / "results" / name).glob("_counter_*"))
    checkpoints = sorted(trial_dir.glob("checkpoint_*"))
    assert [c.name for c in checkpoints] == ["checkpoint_000000", "checkpoint_000001", "checkpoint_000002"]
    shutil.rmtree(checkpoints[-1])  # what num_to_keep deleted after the state last reached storage
    restored = tune.Tuner.restore(str(tmp_path / "results" / name), _counter, resume_errored=True)
    return restored.fit()


def test_restore_resumes_from_the_newest_checkpoint_left(local_ray, tmp_path):
    results = _killed_then_restored(tmp_path, "repointed", [RepointMissingCheckpoint()])
    assert not results.errors
    final = results[0].metrics
    assert final["step"] == 5 and final["start"] == 2, final


def test_without_the_callback_tunes_restore_fails_the_trial(local_ray, tmp_path):
    results = _killed_then_restored(tmp_path, "plain", [])
    assert results.errors
    assert "does not exist on storage anymore" in str(results.errors[0])
