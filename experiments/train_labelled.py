"""Training label-supervised models (:class:`~experiments.models.labelled.LabelledModel`) with the one loop,
:func:`experiments.training.fit` over a :class:`~experiments.training.LabelledSource`.

The images of the training classes live on the device as one uint8 tensor; every step takes a batch of a shuffled
permutation (full batches only) with its labels and, for models that mine them, a batch of seen
out-of-distribution images drawn uniformly. Same optimisers, schedules, checkpoints (:class:`TrainState`) and
per-epoch results as :func:`experiments.train.train`, so the sweeper runs both families the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from experiments.augment import Perturbation
from experiments.models.labelled import LabelledModel
from experiments.training.loop import fit
from experiments.training.sources import LabelledSource, SeenOoDBatches
from experiments.training.state import EpochResult, TrainSettings, TrainState

log = logging.getLogger(__name__)


def train_labelled(
    model: LabelledModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    settings: TrainSettings,
    *,
    ood_images: torch.Tensor | None = None,
    perturb: Perturbation | None = None,
    flip: bool = False,
    device: str | torch.device = "cpu",
    seed: int = 0,
    state: TrainState | None = None,
    on_epoch: Callable[[EpochResult, Callable[[], TrainState]], None] | None = None,
    amp: bool | None = None,
) -> list[EpochResult]:
    """Train ``model`` on uint8 ``images`` (N, 3, H, W) with integer ``labels`` (N,).

    Args:
        model: The model; ``model.loss(x, y, ood)`` is minimised.
        images: Training images of the training classes.
        labels: Their labels (any integers; the model sees them as given).
        settings: Optimisation settings (``batch_size`` is the batch constraints are drawn from).
        ood_images: Seen out-of-distribution images, required when ``model.uses_ood``; a batch of ``batch_size``
            of them (drawn with replacement when fewer) accompanies every step.
        perturb: Applied to every training batch (the sweep's ``augmentation_at: train``).
        flip: Random horizontal flips of the training batches (standard augmentation of supervised training).
        device: Where to train.
        seed: Seeds shuffling, OoD draws, flips and perturbations (reproducible on CPU).
        state: Continue from this state (epochs already done are skipped).
        on_epoch: Called after each epoch with its result and a function that snapshots a :class:`TrainState`
            (after the model's ``on_after_step`` / ``on_epoch_end`` hooks, as in :func:`experiments.train.train`).
        amp: bf16 autocast; ``None``: on when ``device`` is CUDA.

    Returns:
        One :class:`EpochResult` per epoch run by this call, with the mean loss terms in ``parts``.

    Raises:
        TrainingDivergedError: the loss became NaN or infinite.
        ValueError: fewer than 2 images, labels that do not match, or OoD images missing for a mining model.
    """
    if len(images) < 2:
        raise ValueError(f"need at least 2 training images, got {len(images)}")
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if model.uses_ood and (ood_images is None or len(ood_images) == 0):
        raise ValueError(f"{type(model).__name__} mines out-of-distribution images: pass ood_images")
    device = torch.device(device)
    seen = SeenOoDBatches(ood_images) if model.uses_ood and ood_images is not None else None
    source = LabelledSource(
        images,
        labels,
        min(settings.batch_size, len(images)),
        ood=seen,
        perturb=perturb,
        flip=flip,
        device=device,
    )
    return fit(model, settings, source, device=device, seed=seed, state=state, on_epoch=on_epoch, amp=amp)


__all__ = ["train_labelled"]
