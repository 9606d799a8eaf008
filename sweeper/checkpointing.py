"""Per-epoch reporting of a trial: metrics to MLflow and Tune every epoch, a checkpoint only when it is due.

A checkpoint (the :class:`~experiments.train.TrainState` and the MLflow run id, handed to Tune) costs a state
snapshot, a ``torch.save`` and Tune's copy into its storage, which on tiny trials is more than the epoch itself. So a
trial persists one after epoch ``e`` only when :meth:`CheckpointPolicy.due` says so: ``e`` is the last epoch, or
``train.checkpoint_every_epochs`` epochs passed since the last persisted one, or ``train.checkpoint_every_seconds``
seconds did. A trial killed in between resumes from the last persisted epoch and redoes the epochs after it (the
exact-resume guarantee of :func:`experiments.train.train` holds from any persisted epoch).
"""

from __future__ import annotations

import json
import logging
import pickle
import posixpath
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.fs
import torch
from mlflow.tracking import MlflowClient
from ray import tune

from experiments.train import EpochResult, TrainState
from sweeper import tracking
from sweeper.config import TrainConfig
from sweeper.timing import TrialTimer

log = logging.getLogger(__name__)


class CheckpointPolicy:
    """When a trial persists a checkpoint: after the last epoch, every ``every_epochs`` epochs, and whenever
    ``every_seconds`` have passed since the last one (``None`` switches a rule off); ``start_epoch``: the epoch of the
    checkpoint a resumed trial started from (0 for a fresh one)."""

    def __init__(
        self, last_epoch: int, every_epochs: int | None, every_seconds: float | None, start_epoch: int = 0
    ) -> None:
        if every_epochs is not None and every_epochs < 1:
            raise ValueError(f"every_epochs must be >= 1, got {every_epochs}")
        if every_seconds is not None and every_seconds < 0:
            raise ValueError(f"every_seconds must be >= 0, got {every_seconds}")
        self.last_epoch = last_epoch
        self.every_epochs = every_epochs
        self.every_seconds = every_seconds
        self.saved_epoch = start_epoch
        self.saved_at = time.monotonic()

    @classmethod
    def of(cls, train: TrainConfig, last_epoch: int, start_epoch: int = 0) -> CheckpointPolicy:
        """The policy of a config's ``train.checkpoint_every_epochs`` / ``train.checkpoint_every_seconds``."""
        return cls(last_epoch, train.checkpoint_every_epochs, train.checkpoint_every_seconds, start_epoch)

    def due(self, epoch: int) -> bool:
        """Whether to persist the checkpoint of ``epoch`` (counting from 1)."""
        if epoch >= self.last_epoch:
            return True
        since = epoch - self.saved_epoch
        if self.every_epochs is not None and since >= self.every_epochs:
            return True
        return self.every_seconds is not None and time.monotonic() - self.saved_at >= self.every_seconds

    def saved(self, epoch: int) -> None:
        self.saved_epoch = epoch
        self.saved_at = time.monotonic()


def epoch_reporter(
    client: MlflowClient,
    run_id: str,
    timer: TrialTimer,
    train: TrainConfig,
    last_epoch: int,
    state: TrainState | None,
) -> Callable[[EpochResult, Callable[[], TrainState]], None]:
    """The ``on_epoch`` callback of a trial: the epoch's metrics to MLflow (``step=epoch``) and to Tune, with a
    checkpoint (``state.pt`` + ``meta.json`` holding the run id) when the :class:`CheckpointPolicy` of ``train`` says
    it is due (``last_epoch``: the trial's last; ``state``: the checkpoint it resumed from, if any)."""
    policy = CheckpointPolicy.of(train, last_epoch, state.epoch if state else 0)

    def on_epoch(result: EpochResult, snapshot: Callable[[], TrainState]) -> None:
        metrics = {
            "loss": result.loss,
            "images_per_second": result.images_per_second,
            "lr": result.lr,
            "epoch_seconds": result.seconds,
            **{f"loss.{k}": v for k, v in result.parts.items()},
        }
        with timer.phase("log"):
            tracking.log_metrics(client, run_id, metrics, step=result.epoch)
        report: dict[str, Any] = {"epoch": result.epoch, **metrics}
        if not policy.due(result.epoch):
            tune.report(report)
            return
        with timer.phase("checkpoint"), tempfile.TemporaryDirectory() as tmp:
            write(Path(tmp), run_id, snapshot())
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(tmp))
        policy.saved(result.epoch)

    return on_epoch


def write(directory: Path, run_id: str, state: TrainState) -> None:
    """A checkpoint's two files in ``directory``: ``state.pt`` (the :class:`TrainState`) and ``meta.json`` (the
    MLflow run id and the epoch)."""
    torch.save(state.to_dict(), directory / "state.pt")
    (directory / "meta.json").write_text(json.dumps({"run_id": run_id, "epoch": state.epoch}))


def _read(checkpoint: tune.Checkpoint) -> tuple[str, TrainState]:
    """The MLflow run id and :class:`TrainState` of one checkpoint (raises if either file is missing or torn)."""
    with checkpoint.as_directory() as d:
        meta = json.loads(Path(d, "meta.json").read_text())
        state = TrainState.from_dict(torch.load(Path(d, "state.pt"), map_location="cpu", weights_only=True))
    return meta["run_id"], state


def _newest_first(checkpoint: tune.Checkpoint) -> list[tune.Checkpoint]:
    """``checkpoint`` and its siblings ``checkpoint_NNNNNN`` in the trial's directory, newest (highest index) first."""
    fs, parent = checkpoint.filesystem, posixpath.dirname(checkpoint.path.rstrip("/"))
    infos = fs.get_file_info(pyarrow.fs.FileSelector(parent, allow_not_found=True))
    names = {posixpath.basename(i.path) for i in infos if i.type == pyarrow.fs.FileType.Directory}
    names = {n for n in names if n.startswith("checkpoint_")} | {posixpath.basename(checkpoint.path.rstrip("/"))}
    return [tune.Checkpoint(posixpath.join(parent, n), filesystem=fs) for n in sorted(names, reverse=True)]


def restore(checkpoint: tune.Checkpoint | None) -> tuple[str | None, TrainState | None]:
    """The run id and state to resume a trial from: the newest readable checkpoint of its directory, ``(None, None)``
    when there is none (the trial then starts again from epoch 0).

    Tune resumes a trial from the checkpoint its experiment state names. That state reaches storage only now and
    then, while Tune deletes checkpoints beyond ``num_to_keep`` as soon as newer ones register: after a driver kill
    the named checkpoint may be gone, and a newer one be there (or be half-written, when the kill came mid-upload).
    Any readable checkpoint resumes bit-exactly (:func:`experiments.train.train`), so the newest one wins."""
    if checkpoint is None:
        return None, None
    for candidate in _newest_first(checkpoint):
        try:
            run_id, state = _read(candidate)
        except (OSError, EOFError, ValueError, KeyError, RuntimeError, pickle.UnpicklingError) as exc:
            log.warning("checkpoint %s is not readable (%s: %s)", candidate.path, type(exc).__name__, exc)
            continue
        if candidate.path != checkpoint.path:
            log.warning("resuming from %s instead of %s, which Tune named", candidate.path, checkpoint.path)
        return run_id, state
    log.warning("no readable checkpoint next to %s: the trial starts again from epoch 0", checkpoint.path)
    return None, None


def _exists(checkpoint: tune.Checkpoint) -> bool:
    """Whether ``checkpoint``'s directory is on its storage."""
    info = checkpoint.filesystem.get_file_info(checkpoint.path.rstrip("/"))
    return info.type != pyarrow.fs.FileType.NotFound


class RepointMissingCheckpoint(tune.Callback):
    """Resume a trial from the newest checkpoint on storage when the one Tune's experiment state names is gone.

    Tune deletes checkpoints beyond ``num_to_keep`` as soon as newer ones register, but uploads its experiment state
    only now and then. After a driver kill, the state may name a deleted checkpoint, and Tune's own
    ``Trainable.restore`` then fails the trial ("does not exist on storage anymore") before :func:`restore` can fall
    back. Tune calls ``on_trial_start`` just before it schedules the restore, so this points the trial's latest
    checkpoint result at the newest ``checkpoint_NNNNNN`` that exists, or at none (the trial starts again from epoch
    0). It touches Tune's checkpoint manager (``_latest_checkpoint_result``, Ray 2.x); where that is not there, it
    does nothing."""

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Repoint ``trial``'s latest checkpoint when it is missing from storage (see the class)."""
        result = trial.latest_checkpoint_result
        manager = getattr(trial.run_metadata, "checkpoint_manager", None)
        if result is None or result.checkpoint is None or not hasattr(manager, "_latest_checkpoint_result"):
            return
        named = result.checkpoint
        if _exists(named):
            return
        # _newest_first lists the directories that are there, plus the named one, which is not: no second lookup.
        newest = next((c for c in _newest_first(named) if c.path != named.path), None)
        log.warning(
            "trial %s: checkpoint %s, which Tune's state names, is gone; resuming from %s",
            trial,
            named.path,
            newest.path if newest else "the start",
        )
        manager._latest_checkpoint_result = type(result)(checkpoint=newest, metrics=result.metrics) if newest else None
