"""A resumed trial restores from the newest readable checkpoint of its directory: Tune's experiment state, synced to
storage only now and then, may name a checkpoint that ``num_to_keep`` has deleted since (a driver killed mid-sweep;
the resume then failed before this fix, CI at stop 25), and the newest may be torn by the kill."""

from __future__ import annotations

import logging

import torch
from ray import tune

from experiments.training.state import TrainState
from sweeper import checkpointing


def _state(epoch: int) -> TrainState:
    return TrainState(epoch, {"w": torch.full((2,), float(epoch))}, {"lr": 0.1}, None, {"loader": torch.zeros(3)})


def _checkpoint(trial_dir, index: int, epoch: int, run_id: str = "run-1"):
    d = trial_dir / f"checkpoint_{index:06d}"
    d.mkdir(parents=True)
    checkpointing.write(d, run_id, _state(epoch))
    return d


def test_the_named_checkpoint_deleted_resumes_from_the_newest_readable_one(tmp_path, caplog):
    trial = tmp_path / "trial"
    _checkpoint(trial, 1, epoch=2)
    _checkpoint(trial, 2, epoch=3)
    torn = _checkpoint(trial, 3, epoch=4)
    (torn / "state.pt").write_bytes((torn / "state.pt").read_bytes()[:40])  # the kill came mid-upload
    (trial / "checkpoint_000000").mkdir()  # what Tune's stale state names; num_to_keep emptied it
    with caplog.at_level(logging.WARNING, logger="sweeper.checkpointing"):
        run_id, state = checkpointing.restore(tune.Checkpoint(str(trial / "checkpoint_000000")))
    assert run_id == "run-1" and state.epoch == 3
    assert torch.equal(state.model["w"], torch.full((2,), 3.0))
    assert "checkpoint_000003 is not readable" in caplog.text and "instead of" in caplog.text


def test_the_named_checkpoint_is_used_when_it_is_the_newest(tmp_path, caplog):
    trial = tmp_path / "trial"
    _checkpoint(trial, 4, epoch=5)
    named = _checkpoint(trial, 5, epoch=6, run_id="run-2")
    with caplog.at_level(logging.WARNING, logger="sweeper.checkpointing"):
        assert checkpointing.restore(tune.Checkpoint(str(named)))[1].epoch == 6
    assert caplog.text == ""


def test_no_readable_checkpoint_starts_again_from_epoch_zero(tmp_path):
    trial = tmp_path / "trial"
    (trial / "checkpoint_000000").mkdir(parents=True)
    assert checkpointing.restore(tune.Checkpoint(str(trial / "checkpoint_000000"))) == (None, None)
    assert checkpointing.restore(tune.Checkpoint(str(tmp_path / "gone" / "checkpoint_000001"))) == (None, None)
    assert checkpointing.restore(None) == (None, None)
