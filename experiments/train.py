"""The self-supervised training loop: two SSL views per image, the model's loss, SGD/Adam, optional cosine schedule.

Checkpoint-friendly: :func:`train` can start from a :class:`TrainState` and hands one to ``on_epoch`` after every
epoch, so an orchestrator can save it and resume after a fault.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader

from experiments.augment import Perturbation, TwoViews
from experiments.models.base import SSLModel

log = logging.getLogger(__name__)


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings of one training run.

    Attributes:
        epochs: Number of passes over the training images.
        batch_size: Images per step (clamped to the number of images; the last incomplete batch is dropped).
        optimizer: ``"sgd"`` (with ``momentum``) or ``"adam"``.
        lr: Learning rate.
        momentum: SGD momentum.
        weight_decay: L2 weight decay.
        schedule: ``"cosine"`` (``CosineAnnealingLR`` over ``epochs``) or ``"none"``.
    """

    epochs: int
    batch_size: int
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.06
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: Literal["cosine", "none"] = "none"

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 2:
            raise ValueError(f"need epochs >= 0 and batch_size >= 2, got {self.epochs} and {self.batch_size}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.schedule not in ("cosine", "none"):
            raise ValueError(f"schedule must be 'cosine' or 'none', got {self.schedule!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


@dataclass
class EpochResult:
    """What one epoch produced: ``epoch`` counts from 1."""

    epoch: int
    loss: float
    images_per_second: float
    lr: float
    seconds: float


@dataclass
class TrainState:
    """Everything needed to continue training exactly where it stopped."""

    epoch: int
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None
    rng: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainState":
        return cls(**d)


def make_optimizer(model: torch.nn.Module, s: TrainSettings) -> tuple[torch.optim.Optimizer, Any]:
    """The optimizer and (or ``None``) learning-rate scheduler that ``s`` describes."""
    if s.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum,
                                                     weight_decay=s.weight_decay)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(s.epochs, 1)) if s.schedule == "cosine" else None
    return opt, sched


def _rng_state(loader_gen: torch.Generator, perturb_gen: torch.Generator) -> dict[str, Any]:
    # numpy's global generator drives lightly's random Gaussian blur in the SSL views
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "gauss": float(gauss)}  # tensors and plain types: weights_only-safe
    return {"torch": torch.get_rng_state(), "numpy": numpy_state, "loader": loader_gen.get_state(),
            "perturb": perturb_gen.get_state()}


def train(model: SSLModel, images: torch.Tensor, settings: TrainSettings, view: Callable[[Any], torch.Tensor], *,
          perturb: Perturbation | None = None, device: str | torch.device = "cpu", seed: int = 0,
          state: TrainState | None = None,
          on_epoch: Callable[[EpochResult, Callable[[], TrainState]], None] | None = None) -> list[EpochResult]:
    """Train ``model`` on uint8 ``images`` (N, 3, H, W) with two SSL views per image.

    Args:
        model: The SSL model; its ``loss(x0, x1)`` is minimised.
        images: Training images of one class.
        settings: Optimisation settings.
        view: Per-image view transform (PIL image → float tensor in [0, 1]), e.g. :func:`ssl_view_transform`.
        perturb: Applied to both view batches after the SSL transform (the sweep's ``augmentation_at: train``).
        device: Where to train.
        seed: Seeds the view randomness (torch's and numpy's global generators, which this function reseeds),
            shuffling and perturbations (reproducible on CPU).
        state: Continue from this state (epochs already done are skipped).
        on_epoch: Called after each epoch with its result and a function that snapshots a :class:`TrainState`.

    Returns:
        One :class:`EpochResult` per epoch run by this call.

    Raises:
        TrainingDivergedError: the loss became NaN or infinite.
    """
    if len(images) < 2:
        raise ValueError(f"need at least 2 training images, got {len(images)}")
    device = torch.device(device)
    model.to(device)
    opt, sched = make_optimizer(model, settings)
    loader_gen = torch.Generator()
    perturb_gen = torch.Generator(device=device)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    loader_gen.manual_seed(seed)
    perturb_gen.manual_seed(seed + 1)
    start = 0
    if state is not None:
        model.load_state_dict(state.model)
        opt.load_state_dict(state.optimizer)
        if sched is not None and state.scheduler is not None:
            sched.load_state_dict(state.scheduler)
        torch.set_rng_state(state.rng["torch"])
        loader_gen.set_state(state.rng["loader"])
        if "numpy" in state.rng:
            n = state.rng["numpy"]
            np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        if "perturb" in state.rng:
            perturb_gen.set_state(state.rng["perturb"])
        else:  # states written before the perturbation generator was saved
            perturb_gen.manual_seed(seed + 1 + state.epoch)
        start = state.epoch
    batch_size = min(settings.batch_size, len(images))
    loader = DataLoader(TwoViews(images, view), batch_size=batch_size, shuffle=True, drop_last=True,
                        generator=loader_gen, num_workers=0)

    def snapshot(epoch: int) -> Callable[[], TrainState]:
        # deep copies: optimizer.state_dict() references the live momentum buffers, which later steps update in place
        return lambda: TrainState(epoch, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                                  copy.deepcopy(opt.state_dict()),
                                  copy.deepcopy(sched.state_dict()) if sched else None,
                                  _rng_state(loader_gen, perturb_gen))

    results = []
    for epoch in range(start + 1, settings.epochs + 1):
        model.train()
        t0, total, seen, lr = time.perf_counter(), 0.0, 0, opt.param_groups[0]["lr"]
        for step, (x0, x1) in enumerate(loader):
            x0, x1 = x0.to(device, non_blocking=True), x1.to(device, non_blocking=True)
            if perturb is not None:
                x0, x1 = perturb(x0, perturb_gen), perturb(x1, perturb_gen)
            loss = model.loss(x0, x1)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(
                    f"loss became {loss.item()} at epoch {epoch}, step {step}: lower the learning rate "
                    f"(now {lr:g}) or check the input data"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(x0)
            seen += len(x0)
        if sched is not None:
            sched.step()
        seconds = time.perf_counter() - t0
        result = EpochResult(epoch, total / max(seen, 1), seen / seconds if seconds > 0 else math.inf, lr, seconds)
        log.info("epoch %d: loss %.4f, %.0f img/s", epoch, result.loss, result.images_per_second)
        results.append(result)
        if on_epoch is not None:
            on_epoch(result, snapshot(epoch))
    return results
