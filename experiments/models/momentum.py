"""What the momentum methods (BYOL, MoCo) share: a target copy of the backbone and projection head, not trained by
the optimizer but moved towards the online network after every optimizer step by an exponential moving average,
``t ← m t + (1 - m) s`` (lightly's ``update_momentum``), with ``m`` from a cosine schedule over the training steps
(lightly's ``cosine_schedule(step, total_steps, m_start, m_end)``)."""

from __future__ import annotations

import copy

import torch
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule

from experiments.models.base import SSLModel


class MomentumSSLModel(SSLModel):
    """An :class:`SSLModel` with momentum targets ``backbone_momentum`` and ``projection_head_momentum``.

    Subclasses build ``projection_head`` and then call :meth:`init_targets`; the training loop calls
    :meth:`on_after_step` after every optimizer step.
    """

    momentum_start: float
    momentum_end: float

    def init_targets(self, momentum_start: float, momentum_end: float) -> None:
        """Copy the backbone and the projection head into frozen targets; ``m`` runs from ``momentum_start`` to
        ``momentum_end`` over the training (equal values: a constant momentum)."""
        if not (0 <= momentum_start <= 1 and 0 <= momentum_end <= 1):
            raise ValueError(f"momentum must be in [0, 1], got {momentum_start} and {momentum_end}")
        self.momentum_start, self.momentum_end = float(momentum_start), float(momentum_end)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)

    def momentum_at(self, step: int, total_steps: int) -> float:
        """``m`` after optimizer step ``step`` of ``total_steps`` (lightly's ``cosine_schedule``)."""
        return cosine_schedule(step, total_steps, self.momentum_start, self.momentum_end)

    @torch.no_grad()
    def on_after_step(self, step: int, total_steps: int) -> None:
        """Move the targets: ``t ← m t + (1 - m) s`` for every parameter, ``m = momentum_at(step, total_steps)``."""
        m = self.momentum_at(step, total_steps)
        update_momentum(self.backbone, self.backbone_momentum, m=m)
        update_momentum(self.projection_head, self.projection_head_momentum, m=m)

    @torch.no_grad()
    def target(self, x: torch.Tensor) -> torch.Tensor:
        """The target network's projection of images in [0, 1] (no gradient)."""
        return self.projection_head_momentum(self.backbone_momentum(self.normalize(x)).flatten(start_dim=1))
