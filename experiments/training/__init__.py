"""The one training loop of every trained family: :func:`fit` over a batch source (two SSL views, labelled batches
with seen-OoD batches), with the optimizer, schedule, AMP, checkpoints, bit-exact resume and the models' hooks.
:func:`experiments.train.train` and :func:`experiments.train_labelled.train_labelled` are its two entry points."""

from experiments.training.loop import BatchSource, fit
from experiments.training.sources import LabelledSource, SeenOoDBatches, TwoViewSource
from experiments.training.state import (
    EpochResult,
    TrainingDivergedError,
    TrainSettings,
    TrainState,
    make_optimizer,
    restore_optimisation,
)

__all__ = [
    "BatchSource",
    "EpochResult",
    "LabelledSource",
    "SeenOoDBatches",
    "TrainSettings",
    "TrainState",
    "TrainingDivergedError",
    "TwoViewSource",
    "fit",
    "make_optimizer",
    "restore_optimisation",
]
