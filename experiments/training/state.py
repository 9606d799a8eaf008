"""What every training run shares: its settings, its per-epoch results, the resumable state, the optimizer and
learning-rate schedule, and how a resume restores them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from experiments.checkpointing import seed_or_restore


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
    """What one epoch produced: ``epoch`` counts from 1; ``parts`` are the mean named loss terms of models whose loss
    has several (e.g. ``metric`` and ``reconstruction``)."""

    epoch: int
    loss: float
    images_per_second: float
    lr: float
    seconds: float
    parts: dict[str, float] = field(default_factory=dict)


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
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        return cls(**d)


def make_optimizer(model: torch.nn.Module, s: TrainSettings) -> tuple[torch.optim.Optimizer, Any]:
    """The optimizer and (or ``None``) learning-rate scheduler that ``s`` describes."""
    if s.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay
        )
    else:
        opt = torch.optim.Adam(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(s.epochs, 1)) if s.schedule == "cosine" else None
    return opt, sched


def restore_optimisation(
    state: TrainState,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sched: Any,
    loader_gen: torch.Generator,
    device: str | torch.device = "cpu",
) -> None:
    """Load a :class:`TrainState`'s weights, optimizer and scheduler state (moved to the parameters' device), torch's
    global RNGs (CPU, and CUDA when training on it; restored, not reseeded) and the shuffling generator (the parts
    every training loop shares)."""
    model.load_state_dict(state.model)
    opt.load_state_dict(state.optimizer)
    if sched is not None and state.scheduler is not None:
        sched.load_state_dict(state.scheduler)
    seed_or_restore(0, state.rng, torch.device(device))
    loader_gen.set_state(state.rng["loader"])
