"""The training loop of label-supervised models (:class:`~experiments.models.labelled.LabelledModel`).

The images of the training classes live on the device as one uint8 tensor; every step takes a batch of a shuffled
permutation (full batches only) with its labels and, for models that mine them, a batch of seen
out-of-distribution images drawn uniformly. Same optimisers, schedules, checkpoints (:class:`TrainState`) and
per-epoch results as :func:`experiments.train.train`, so the sweeper runs both families the same way.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable

import torch

from experiments.augment import Perturbation
from experiments.checkpointing import generator_state, global_rng_state, restore_generator, to_cpu
from experiments.models.labelled import LabelledModel
from experiments.precision import resolve_amp
from experiments.train import (
    EpochResult,
    TrainingDivergedError,
    TrainSettings,
    TrainState,
    make_optimizer,
    restore_optimisation,
)

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
    amp = resolve_amp(amp, device)
    model.to(device)
    opt, sched = make_optimizer(model, settings)
    gen = torch.Generator()
    aug_gen = torch.Generator(device=device)
    if state is None:  # a resume restores the global generators instead (reseeding would reset the CUDA ones)
        torch.manual_seed(seed)
    gen.manual_seed(seed)
    aug_gen.manual_seed(seed + 1)
    start = 0
    if state is not None:
        restore_optimisation(state, model, opt, sched, gen, device)
        restore_generator(aug_gen, state.rng["perturb"], seed + 1 + state.epoch)
        start = state.epoch
    x_all, y_all = images.to(device), labels.to(device=device, dtype=torch.long)
    ood_all = ood_images.to(device) if model.uses_ood and ood_images is not None else None
    batch_size = min(settings.batch_size, len(images))

    def prepare(x: torch.Tensor) -> torch.Tensor:
        x = x.float().div_(255.0)
        if flip:
            mask = torch.rand(len(x), generator=aug_gen, device=device) < 0.5
            x = torch.where(mask[:, None, None, None], x.flip(-1), x)
        return perturb(x, aug_gen) if perturb is not None else x

    def snapshot(epoch: int) -> Callable[[], TrainState]:
        return lambda: TrainState(
            epoch,
            {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()},
            to_cpu(opt.state_dict()),  # CPU copies of the momentum buffers
            copy.deepcopy(sched.state_dict()) if sched else None,
            {**global_rng_state(device), "loader": gen.get_state(), "perturb": generator_state(aug_gen)},
        )

    after_step, epoch_end = getattr(model, "on_after_step", None), getattr(model, "on_epoch_end", None)
    steps = len(images) // batch_size
    results = []
    for epoch in range(start + 1, settings.epochs + 1):
        model.train()
        t0, seen, lr = time.perf_counter(), 0, opt.param_groups[0]["lr"]
        total = 0.0
        parts_sum: dict[str, float] = {}
        order = torch.randperm(len(images), generator=gen).to(device)
        for step in range(len(images) // batch_size):
            idx = order[step * batch_size : (step + 1) * batch_size]
            x, y = prepare(x_all.index_select(0, idx)), y_all.index_select(0, idx)
            ood = None
            if ood_all is not None:
                pick = torch.randint(len(ood_all), (batch_size,), generator=gen).to(device)
                ood = prepare(ood_all.index_select(0, pick))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss, parts = model.loss(x, y, ood)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            value = loss.item()
            if not math.isfinite(value):
                raise TrainingDivergedError(
                    f"loss became {value} at epoch {epoch}, step {step}: lower the learning "
                    f"rate (now {lr:g}) or check the input data"
                )
            opt.step()
            if after_step is not None:
                after_step((epoch - 1) * steps + step, settings.epochs * steps)
            total += value * len(x)
            for name, part in parts.items():
                parts_sum[name] = parts_sum.get(name, 0.0) + float(part.detach()) * len(x)
            seen += len(x)
        if sched is not None:
            sched.step()
        if epoch_end is not None:
            epoch_end(epoch, settings.epochs)
        seconds = time.perf_counter() - t0
        result = EpochResult(
            epoch,
            total / max(seen, 1),
            seen / seconds if seconds > 0 else math.inf,
            lr,
            seconds,
            {k: v / max(seen, 1) for k, v in parts_sum.items()},
        )
        log.info(
            "epoch %d: loss %.4f (%s)", epoch, result.loss, ", ".join(f"{k} {v:.4f}" for k, v in result.parts.items())
        )
        results.append(result)
        if on_epoch is not None:
            on_epoch(result, snapshot(epoch))
    return results


__all__ = ["train_labelled"]
