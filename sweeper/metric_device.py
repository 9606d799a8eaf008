"""Where a trial's bootstrap metrics compute: decided by the trial, never by what a Ray task happens to see.

Ray's CPU-only tasks may see every GPU of their node (Ray 2.60 no longer blanks ``CUDA_VISIBLE_DEVICES`` for
zero-GPU tasks) or none (older versions do). A metric that picked CUDA because CUDA is visible would pile onto GPU 0
outside Ray's accounting, or fail. So the trial passes its own device -- its GPU when it holds one, else the CPU --
and :func:`plan_metrics` turns it into explicit options:

* distance metrics (Hausdorff, summed Euclidean, Chamfer) get ``device=`` the trial's device;
* MTopDiv gets an explicit backend: ``auto`` is ripser++ only with a CUDA device and a usable ripser++
  (:func:`experiments.metrics.ripserpp.unavailable_reason`, logged when it falls back), giotto-ph otherwise;
  ``ripserplusplus`` without a GPU is an error;
* every metric that computes on the GPU runs in the trial's process (which holds the GPU in its placement-group
  bundle), the others in Ray tasks on the CPU with ``device="cpu"``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from experiments.metrics.batched import DISTANCE_METRICS
from experiments.metrics.cross_barcode import resolve_backend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricPlan:
    """Explicit per-metric ``options`` and the metrics computed on the GPU in the trial's process (``on_device``;
    empty on a CPU)."""

    device: str
    options: dict[str, dict[str, Any]]
    on_device: tuple[str, ...]

    @property
    def in_tasks(self) -> tuple[str, ...]:
        """The metrics computed by CPU Ray tasks."""
        return tuple(m for m in self.options if m not in self.on_device)


def mtopdiv_backend_for(backend: str, device: torch.device) -> str:
    """The explicit MTopDiv backend for a trial computing on ``device``: ``auto`` resolved by
    :func:`experiments.metrics.cross_barcode.resolve_backend` (ripser++ only with a CUDA device and a usable ripser++,
    the reason logged otherwise); ``ripserplusplus`` on a trial without a GPU is an error."""
    if backend == "ripserplusplus" and device.type != "cuda":
        raise ValueError(
            "score.mtopdiv_backend: ripserplusplus needs a GPU, and this trial holds none "
            "(set resources.gpus_per_trial, or mtopdiv_backend: auto or giotto)"
        )
    return resolve_backend(backend, device) if backend == "auto" else backend


def plan_metrics(
    metrics: Sequence[str],
    device: str | torch.device = "cpu",
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> MetricPlan:
    """Explicit options and placement of ``metrics`` for a trial whose device is ``device`` (``metric_options``: the
    configured ones, e.g. ``{"mtopdiv": {"backend": "auto"}}``; ``device`` and ``backend`` are set here)."""
    dev = torch.device(device)
    options: dict[str, dict[str, Any]] = {}
    on_device = []
    for name in dict.fromkeys(metrics):
        opts = dict((metric_options or {}).get(name, {}))
        if name in DISTANCE_METRICS:
            opts["device"] = str(dev)
            if dev.type == "cuda":
                on_device.append(name)
        elif name == "mtopdiv":
            opts["backend"] = mtopdiv_backend_for(opts.get("backend", "auto"), dev)
            if opts["backend"] == "ripserplusplus":
                on_device.append(name)
        options[name] = opts
    return MetricPlan(str(dev), options, tuple(on_device))


__all__ = ["MetricPlan", "mtopdiv_backend_for", "plan_metrics"]
