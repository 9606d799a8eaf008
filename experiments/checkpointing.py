"""Device-independent training checkpoints: global RNG streams (CPU and CUDA), explicit generators, CPU tensors.

A checkpoint written on a GPU must resume on a GPU with the very same random streams, and must load on a machine
without one:

* :func:`global_rng_state` saves ``torch.get_rng_state()`` and, when the training device is CUDA,
  ``torch.cuda.get_rng_state_all()`` (the generators behind dropout, ``torch.rand(..., device="cuda")`` and the
  models' pair sampling on the GPU). :func:`seed_or_restore` seeds them for a fresh run and *restores* them -- never
  reseeds -- on resume (``torch.manual_seed`` would reset every CUDA generator to the start of epoch 1's stream).
* :func:`generator_state` / :func:`restore_generator` keep an explicit generator's state together with its device
  type: a CUDA generator's state (Philox) cannot be loaded into a CPU generator (Mersenne Twister) nor the other way
  round, so a resume on another device type reseeds that generator (deterministically, with a warning) instead of
  failing.
* :func:`to_cpu` copies every tensor of a nested state (``optimizer.state_dict()`` keeps its momentum buffers on
  the device) to the CPU, so ``torch.load(..., map_location="cpu")`` never needs a GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch

log = logging.getLogger(__name__)


def to_cpu(obj: Any) -> Any:
    """A copy of ``obj`` with every tensor (in dicts, lists and tuples, at any depth) detached, copied to the CPU and
    made contiguous; other values are returned as they are. The copies share no memory with ``obj``."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True, memory_format=torch.contiguous_format)
    if isinstance(obj, Mapping):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_cpu(v) for v in obj)
    return obj


def cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` as contiguous CPU copies (what weights files and checkpoints hold)."""
    return to_cpu(dict(model.state_dict()))


def global_rng_state(device: torch.device) -> dict[str, Any]:
    """``{"torch": CPU generator state}`` plus ``"cuda"``: one state per visible GPU when ``device`` is CUDA."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def seed_or_restore(seed: int, rng: Mapping[str, Any] | None, device: torch.device) -> None:
    """Seed torch's global generators with ``seed`` (``rng is None``: a fresh run) or restore them from a saved
    ``rng`` (:func:`global_rng_state`) without reseeding.

    On resume, the CUDA generators are restored when the state holds them and ``device`` is CUDA; a state saved on
    another number of GPUs restores the common ones. A state without CUDA generators (written on a CPU, or before
    they were saved) leaves them as they are, with a warning: that run's GPU random stream is not reproducible.
    """
    if rng is None:
        torch.manual_seed(seed)  # seeds the CUDA generators too
        return
    torch.set_rng_state(rng["torch"])
    if device.type != "cuda":
        return
    saved = rng.get("cuda")
    if saved is None:
        log.warning(
            "checkpoint holds no CUDA RNG state (saved on a CPU or by an older version): GPU random stream differs"
        )
        return
    count = torch.cuda.device_count()
    if len(saved) != count:
        log.warning(
            "checkpoint holds %d CUDA RNG states, %d GPU(s) visible: restoring the first ones", len(saved), count
        )
        for index, s in enumerate(saved[: min(len(saved), count)]):
            torch.cuda.set_rng_state(s, index)
        return
    torch.cuda.set_rng_state_all(list(saved))


def generator_state(gen: torch.Generator) -> dict[str, Any]:
    """An explicit generator's state with its device type (``{"state": ByteTensor, "device": "cpu" | "cuda"}``)."""
    return {"state": gen.get_state().cpu(), "device": gen.device.type}


def restore_generator(gen: torch.Generator, saved: Any, fallback_seed: int) -> None:
    """Load ``saved`` (:func:`generator_state`, or a bare state tensor from older checkpoints, taken as written on
    ``gen``'s device type) into ``gen``; when it was written on another device type, seed ``gen`` with
    ``fallback_seed`` instead (a warning says so: the stream then differs from an uninterrupted run)."""
    if isinstance(saved, Mapping):
        state, device = saved["state"], saved["device"]
    else:
        state, device = saved, gen.device.type
    if device != gen.device.type:
        log.warning(
            "generator state saved on %s cannot be loaded on %s: reseeding it with %d",
            device,
            gen.device.type,
            fallback_seed,
        )
        gen.manual_seed(fallback_seed)
        return
    gen.set_state(state)


__all__ = [
    "cpu_state_dict",
    "generator_state",
    "global_rng_state",
    "restore_generator",
    "seed_or_restore",
    "to_cpu",
]
