"""The self-supervised training loop: two SSL views per image, the model's loss, SGD/Adam, optional cosine schedule.

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

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader

from experiments.augment import Perturbation, TwoViews
from experiments.checkpointing import generator_state, global_rng_state, restore_generator, seed_or_restore, to_cpu
from experiments.models.base import SSLModel
from experiments.precision import resolve_amp
from experiments.views import BatchedSSLViews

log = logging.getLogger(__name__)

Pipeline = Literal["batched", "per_image"]
PIPELINES: tuple[str, ...] = ("batched", "per_image")


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


def _rng_state(
    loader_gen: torch.Generator, perturb_gen: torch.Generator, views_gen: torch.Generator, device: torch.device
) -> dict[str, Any]:
    # numpy's global generator drives lightly's random Gaussian blur in the per-image SSL views
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = {
        "kind": kind,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }  # tensors and plain types: weights_only-safe
    return {
        **global_rng_state(device),  # "torch", and "cuda" when training on a GPU
        "numpy": numpy_state,
        "loader": loader_gen.get_state(),
        "perturb": generator_state(perturb_gen),  # on the training device: kept with its device type
        "views": views_gen.get_state(),
    }


def _views_for(view: Any, pipeline: str) -> tuple[BatchedSSLViews | None, Callable[[Any], torch.Tensor] | None]:
    """The batched views (``pipeline="batched"``) or the per-image transform (``"per_image"``) that ``view`` stands
    for: a :class:`BatchedSSLViews`, a lightly ``SimCLRViewTransform`` (converted for the batched pipeline) or, for
    the per-image pipeline, any per-image callable."""
    if pipeline == "per_image":
        return None, view.per_image() if isinstance(view, BatchedSSLViews) else view
    if isinstance(view, BatchedSSLViews):
        return view, None
    try:
        return BatchedSSLViews.from_lightly(view), None
    except ValueError as exc:
        raise ValueError(
            f"pipeline='batched' needs a BatchedSSLViews or a lightly SimCLRViewTransform ({exc}); "
            "pass pipeline='per_image' to train with another per-image view transform"
        ) from None


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
    batched_views, image_view = _views_for(view, pipeline)
    device = torch.device(device)
    amp = resolve_amp(amp, device)
    channels_last = pipeline == "batched" if channels_last is None else bool(channels_last)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device, memory_format=memory_format)
    opt, sched = make_optimizer(model, settings)
    loader_gen = torch.Generator()
    perturb_gen = torch.Generator(device=device)
    views_gen = torch.Generator()  # on the CPU: view parameters are tiny, and the same on every device
    if state is None:  # a resume restores the global generators instead (reseeding would reset the CUDA ones)
        torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    loader_gen.manual_seed(seed)
    perturb_gen.manual_seed(seed + 1)
    views_gen.manual_seed(seed + 2)
    start = 0
    if state is not None:
        restore_optimisation(state, model, opt, sched, loader_gen, device)
        if "numpy" in state.rng:
            n = state.rng["numpy"]
            np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        if "perturb" in state.rng:
            restore_generator(perturb_gen, state.rng["perturb"], seed + 1 + state.epoch)
        else:  # states written before the perturbation generator was saved
            perturb_gen.manual_seed(seed + 1 + state.epoch)
        if "views" in state.rng:
            views_gen.set_state(state.rng["views"])
        else:  # states written before the batched pipeline existed
            views_gen.manual_seed(seed + 2 + state.epoch)
        start = state.epoch
    batch_size = min(settings.batch_size, len(images))
    if batched_views is not None:
        batches = _batched_loader(images.to(device), batch_size, loader_gen, batched_views, views_gen)
    else:
        loader = DataLoader(
            TwoViews(images, image_view),
            batch_size=batch_size,
            shuffle=True,
            drop_last=True,
            generator=loader_gen,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
        )
        batches = lambda: loader  # a DataLoader starts a new epoch on every iteration  # noqa: E731
    loss_fn = torch.compile(model.loss) if compile else model.loss
    after_step, epoch_end = getattr(model, "on_after_step", None), getattr(model, "on_epoch_end", None)
    steps = len(images) // batch_size  # full batches per epoch, in both pipelines

    def snapshot(epoch: int) -> Callable[[], TrainState]:
        # CPU copies: optimizer.state_dict() references the live momentum buffers (on the device), which later
        # steps update in place
        return lambda: TrainState(
            epoch,
            {
                k: v.detach().to("cpu", copy=True, memory_format=torch.contiguous_format)
                for k, v in model.state_dict().items()
            },
            to_cpu(opt.state_dict()),
            copy.deepcopy(sched.state_dict()) if sched else None,
            _rng_state(loader_gen, perturb_gen, views_gen, device),
        )

    results = []
    try:
        for epoch in range(start + 1, settings.epochs + 1):
            model.train()
            t0, total, seen, lr = time.perf_counter(), 0.0, 0, opt.param_groups[0]["lr"]
            for step, (x0, x1) in enumerate(batches()):
                x0 = x0.to(device, non_blocking=True).contiguous(memory_format=memory_format)
                x1 = x1.to(device, non_blocking=True).contiguous(memory_format=memory_format)
                if perturb is not None:
                    x0, x1 = perturb(x0, perturb_gen), perturb(x1, perturb_gen)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    loss = loss_fn(x0, x1)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                value = loss.item()  # the one synchronisation per step, after the backward pass was queued
                if not math.isfinite(value):
                    raise TrainingDivergedError(
                        f"loss became {value} at epoch {epoch}, step {step}: lower the learning rate "
                        f"(now {lr:g}) or check the input data"
                    )
                opt.step()
                if after_step is not None:  # e.g. a momentum update of a target network
                    after_step((epoch - 1) * steps + step, settings.epochs * steps)
                total += value * len(x0)
                seen += len(x0)
            if sched is not None:
                sched.step()
            if epoch_end is not None:
                epoch_end(epoch, settings.epochs)
            seconds = time.perf_counter() - t0
            result = EpochResult(epoch, total / max(seen, 1), seen / seconds if seconds > 0 else math.inf, lr, seconds)
            log.info("epoch %d: loss %.4f, %.0f img/s", epoch, result.loss, result.images_per_second)
            results.append(result)
            if on_epoch is not None:
                on_epoch(result, snapshot(epoch))
    finally:
        if channels_last:  # hand the model back in the default layout (embedding, saved weights)
            model.to(memory_format=torch.contiguous_format)
    return results


def _batched_loader(
    images: torch.Tensor,
    batch_size: int,
    loader_gen: torch.Generator,
    views: BatchedSSLViews,
    views_gen: torch.Generator,
) -> Callable[[], Any]:
    """One epoch of ``(view0, view1)`` batches of the device-resident uint8 ``images``: a permutation from
    ``loader_gen`` (as the DataLoader's ``RandomSampler`` draws it), full batches only (``drop_last``)."""

    def epoch():
        order = torch.randperm(len(images), generator=loader_gen).to(images.device, non_blocking=True)
        for k in range(len(images) // batch_size):
            batch = images.index_select(0, order[k * batch_size : (k + 1) * batch_size])
            yield views(batch, views_gen), views(batch, views_gen)

    return epoch
