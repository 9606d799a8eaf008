"""Self-supervised training: two SSL views per image, the model's loss, SGD/Adam, optional cosine schedule -- the
one loop :func:`experiments.training.fit` over a :class:`~experiments.training.TwoViewSource`.

Two input pipelines produce the views (same view distribution, see :mod:`experiments.views`):

- ``"batched"`` (default): the class's images live on the training device as one uint8 tensor; each step gathers a
  shuffled index batch and :class:`~experiments.views.BatchedSSLViews` makes both views of the whole batch with
  vectorised torch ops, drawing from an explicit generator. No DataLoader, no PIL, no per-image Python.
- ``"per_image"``: proj18's pipeline — a ``DataLoader`` over :class:`~experiments.augment.TwoViews` (lightly's PIL
  transforms per image, optionally in worker processes). Kept as the baseline of ``benchmarks/train_throughput.py``.

On CUDA the forward and backward passes run under bf16 autocast by default; ``channels_last`` and ``torch.compile``
are options. Checkpoint-friendly: :func:`train` can start from a :class:`TrainState` and hands one to ``on_epoch``
after every epoch, so an orchestrator can save it and resume after a fault.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import torch

from experiments.augment import Perturbation
from experiments.models.base import SSLModel
from experiments.training.loop import fit
from experiments.training.sources import TwoViewSource
from experiments.training.state import (
    EpochResult,
    TrainingDivergedError,
    TrainSettings,
    TrainState,
    make_optimizer,
    restore_optimisation,
)

log = logging.getLogger(__name__)

Pipeline = Literal["batched", "per_image"]
PIPELINES: tuple[str, ...] = ("batched", "per_image")


def train(
    model: SSLModel,
    images: torch.Tensor,
    settings: TrainSettings,
    view: Any,
    *,
    perturb: Perturbation | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    state: TrainState | None = None,
    on_epoch: Callable[[EpochResult, Callable[[], TrainState]], None] | None = None,
    pipeline: Pipeline = "batched",
    amp: bool | None = None,
    channels_last: bool | None = None,
    compile: bool = False,
    num_workers: int = 0,
) -> list[EpochResult]:
    """Train ``model`` on uint8 ``images`` (N, 3, H, W) with two SSL views per image.

    Args:
        model: The SSL model; its ``loss(x0, x1)`` is minimised.
        images: Training images of one class.
        settings: Optimisation settings.
        view: The SSL view: a :class:`~experiments.views.BatchedSSLViews`, or a lightly ``SimCLRViewTransform``
            such as :func:`~experiments.augment.ssl_view_transform` returns (converted to its batched equivalent for
            the batched pipeline), or — per-image pipeline only — any per-image transform (PIL image → float tensor
            in [0, 1]).
        perturb: Applied to both view batches after the SSL transform (the sweep's ``augmentation_at: train``).
        device: Where to train.
        seed: Seeds the view randomness, shuffling and perturbations (reproducible on CPU). The per-image pipeline
            draws its views from torch's and numpy's global generators, which this function reseeds; the batched
            pipeline from its own generator (seeded ``seed + 2``).
        state: Continue from this state (epochs already done are skipped).
        on_epoch: Called after each epoch with its result and a function that snapshots a :class:`TrainState`.
            The model's own hooks, where it has them, run first: ``model.on_after_step(step, total_steps)`` after
            every optimizer step (``step`` counts from 0 over the whole run) and ``model.on_epoch_end(epoch,
            epochs)`` after every epoch.
        pipeline: ``"batched"`` (views of whole batches on ``device``) or ``"per_image"`` (PIL views per image in a
            DataLoader, proj18's pipeline). Both are deterministic in ``seed``; their random streams differ.
        amp: bf16 autocast for the forward and backward passes; ``None``: on when ``device`` is CUDA. On a CPU it is
            allowed but only pays with native bf16 (AVX512-BF16/AMX).
        channels_last: Model and inputs in channels-last memory format; ``None``: on for the batched pipeline.
        compile: ``torch.compile`` the model's loss (first steps pay the compilation).
        num_workers: DataLoader worker processes of the per-image pipeline (proj18 used 2); ignored when batched.

    Returns:
        One :class:`EpochResult` per epoch run by this call.

    Raises:
        TrainingDivergedError: the loss became NaN or infinite.
        ValueError: fewer than 2 images, an unknown pipeline, or a ``view`` the batched pipeline cannot use.
    """
    if len(images) < 2:
        raise ValueError(f"need at least 2 training images, got {len(images)}")
    if pipeline not in PIPELINES:
        raise ValueError(f"pipeline must be one of {PIPELINES}, got {pipeline!r}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    device = torch.device(device)
    channels_last = pipeline == "batched" if channels_last is None else bool(channels_last)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    source = TwoViewSource(
        images,
        min(settings.batch_size, len(images)),
        view,
        pipeline=pipeline,
        perturb=perturb,
        device=device,
        memory_format=memory_format,
        compile=compile,
        num_workers=num_workers,
    )
    return fit(
        model,
        settings,
        source,
        device=device,
        seed=seed,
        state=state,
        on_epoch=on_epoch,
        amp=amp,
        memory_format=memory_format,
    )


__all__ = [
    "PIPELINES",
    "EpochResult",
    "Pipeline",
    "TrainSettings",
    "TrainState",
    "TrainingDivergedError",
    "make_optimizer",
    "restore_optimisation",
    "train",
]
