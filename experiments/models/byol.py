"""BYOL (Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning", NeurIPS 2020,
https://arxiv.org/abs/2006.07733) with lightly's heads, loss and momentum utilities.

As lightly's CIFAR-10 benchmark (``benchmarks/cifar10_benchmark.py``, ``BYOLModel``): projection head
``BYOLProjectionHead(d, 1024, 256)``, prediction head ``BYOLPredictionHead(256, 1024, 256)``, the symmetric
negative-cosine loss ``½ (L(p0, t1) + L(p1, t0))`` against the momentum target, whose momentum follows
``cosine_schedule`` from 0.996 to 1 (here per optimizer step; lightly steps it per epoch). Training defaults
(the registry's): SGD, lr 0.06 (the benchmark's ``6e-2`` per 128 images), momentum 0.9, weight decay 5e-4, cosine
schedule, 200 epochs.
"""

from __future__ import annotations

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from torch import nn

from experiments.models.momentum import MomentumSSLModel

TRAIN_DEFAULTS = {
    "epochs": 200,
    "optimizer": "sgd",
    "lr": 0.06,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "schedule": "cosine",
}


class BYOL(MomentumSSLModel):
    """BYOL on a given backbone (``feature_dim`` features); ``embed(x, "projection")`` is the online projection.

    Example:
        >>> model = BYOL(resnet20(), 64, mean=(0.5,) * 3, std=(0.25,) * 3)
        >>> loss = model.loss(view0, view1); ...; model.on_after_step(step, total_steps)
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        hidden_dim: int = 1024,
        output_dim: int = 256,
        momentum_start: float = 0.996,
        momentum_end: float = 1.0,
    ) -> None:
        super().__init__(backbone, mean, std)
        self.projection_head = BYOLProjectionHead(feature_dim, hidden_dim, output_dim)
        self.prediction_head = BYOLPredictionHead(output_dim, hidden_dim, output_dim)
        self.criterion = NegativeCosineSimilarity()
        self.init_targets(momentum_start, momentum_end)

    def loss(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """``½ (L(p0, t1) + L(p1, t0))``: online predictions ``p`` against target projections ``t`` of the other view
        (negative cosine similarity, run in float32 with autocast off as :meth:`SSLModel.loss`)."""
        p0, p1 = self.prediction_head(self(x0)), self.prediction_head(self(x1))
        t0, t1 = self.target(x0), self.target(x1)
        with torch.autocast(p0.device.type, enabled=False):
            return 0.5 * (self.criterion(p0.float(), t1.float()) + self.criterion(p1.float(), t0.float()))
