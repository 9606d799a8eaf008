"""The one training loop: :func:`fit` runs the epochs of any model over a batch source.

Per epoch: the source's batches (each drawn, perturbed and moved to the device by the source), the source's loss
under bf16 autocast where enabled, ``zero_grad`` / ``backward`` / ``step`` with a divergence check, the model's
``on_after_step(step, total_steps)`` hook after every optimizer step (momentum targets), the schedule's step, the
model's ``on_epoch_end(epoch, epochs)`` hook, then ``on_epoch(result, snapshot)``: the caller may persist the
:class:`~experiments.training.state.TrainState` that ``snapshot()`` returns, and :func:`fit` resumes from it
exactly (weights, optimizer, schedule, global and source generators).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import torch

from experiments.checkpointing import global_rng_state, to_cpu
from experiments.precision import resolve_amp
from experiments.training.state import (
    EpochResult,
    TrainingDivergedError,
    TrainSettings,
    TrainState,
    make_optimizer,
    restore_optimisation,
)

log = logging.getLogger(__name__)


class BatchSource(Protocol):
    """Where a training run's batches come from (see :mod:`experiments.training.sources`).

    ``seed(seed)`` seeds the source's generators for a fresh run; ``restore(state, seed)`` restores them from a
    checkpoint (after the loop restored the shuffling generator ``loader_gen``); ``prepare(model, device)`` is called
    once before the first epoch; ``batches()`` yields one epoch of batches; ``loss(batch)`` is ``(total, parts,
    batch size)``; ``rng_state()`` is the source's part of a checkpoint's ``rng``.
    """

    loader_gen: torch.Generator
    steps_per_epoch: int

    def seed(self, seed: int) -> None: ...
    def restore(self, state: TrainState, seed: int) -> None: ...
    def prepare(self, model: torch.nn.Module, device: torch.device) -> None: ...
    def batches(self) -> Any: ...
    def loss(self, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]: ...
    def rng_state(self) -> dict[str, Any]: ...


def fit(
    model: torch.nn.Module,
    settings: TrainSettings,
    source: BatchSource,
    *,
    device: str | torch.device = "cpu",
    seed: int = 0,
    state: TrainState | None = None,
    on_epoch: Callable[[EpochResult, Callable[[], TrainState]], None] | None = None,
    amp: bool | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> list[EpochResult]:
    """Train ``model`` on ``source``'s batches with the optimizer and schedule of ``settings``.

    A fresh run seeds torch's global generator with ``seed`` (a resume restores it instead: reseeding would reset
    the CUDA generators), then the source's generators; with ``state`` the epochs up to ``state.epoch`` are skipped.
    ``amp``: bf16 autocast, ``None`` = on for CUDA. ``memory_format``: the model's layout while training (handed
    back contiguous).

    Returns:
        One :class:`EpochResult` per epoch run by this call (``parts``: the mean named loss terms, if any).

    Raises:
        TrainingDivergedError: the loss became NaN or infinite.
    """
    device = torch.device(device)
    amp = resolve_amp(amp, device)
    model.to(device, memory_format=memory_format)
    opt, sched = make_optimizer(model, settings)
    if state is None:
        torch.manual_seed(seed)
    source.seed(seed)
    start = 0
    if state is not None:
        restore_optimisation(state, model, opt, sched, source.loader_gen, device)
        source.restore(state, seed)
        start = state.epoch
    source.prepare(model, device)
    after_step, epoch_end = getattr(model, "on_after_step", None), getattr(model, "on_epoch_end", None)
    steps = source.steps_per_epoch

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
            {**global_rng_state(device), **source.rng_state()},
        )

    results = []
    try:
        for epoch in range(start + 1, settings.epochs + 1):
            model.train()
            t0, total, seen, lr = time.perf_counter(), 0.0, 0, opt.param_groups[0]["lr"]
            parts_sum: dict[str, float] = {}
            for step, batch in enumerate(source.batches()):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    loss, parts, n = source.loss(batch)
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
                total += value * n
                for name, part in parts.items():
                    parts_sum[name] = parts_sum.get(name, 0.0) + float(part.detach()) * n
                seen += n
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
            if result.parts:
                terms = ", ".join(f"{k} {v:.4f}" for k, v in result.parts.items())
                log.info("epoch %d: loss %.4f (%s)", epoch, result.loss, terms)
            else:
                log.info("epoch %d: loss %.4f, %.0f img/s", epoch, result.loss, result.images_per_second)
            results.append(result)
            if on_epoch is not None:
                on_epoch(result, snapshot(epoch))
    finally:
        if memory_format != torch.contiguous_format:  # hand the model back in the default layout
            model.to(memory_format=torch.contiguous_format)
    return results
