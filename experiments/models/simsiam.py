"""SimSiam (Chen and He, "Exploring Simple Siamese Representation Learning", CVPR 2021,
https://arxiv.org/abs/2011.10566) with lightly's heads and loss.

As lightly's CIFAR-10 benchmark (``benchmarks/cifar10_benchmark.py``, ``SimSiamModel``): projection head
``SimSiamProjectionHead(d, 512, 128)``, prediction head ``SimSiamPredictionHead(128, 64, 128)`` and the symmetric
negative-cosine loss with a stop-gradient on the projections, ``½ (L(p0, sg(z1)) + L(p1, sg(z0)))``. Training
defaults (the registry's): SGD, lr 0.06 (``6e-2`` per 128 images), momentum 0.9, weight decay 5e-4, cosine
schedule, 200 epochs.
"""

from __future__ import annotations

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead
from torch import nn

from experiments.models.base import SSLModel

TRAIN_DEFAULTS = {
    "epochs": 200,
    "optimizer": "sgd",
    "lr": 0.06,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "schedule": "cosine",
}


class SimSiam(SSLModel):
    """SimSiam on a given backbone; ``embed(x, "projection")`` is the projection ``z``."""

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        hidden_dim: int = 512,
        output_dim: int = 128,
        prediction_dim: int = 64,
    ) -> None:
        super().__init__(backbone, mean, std)
        self.projection_head = SimSiamProjectionHead(feature_dim, hidden_dim, output_dim)
        self.prediction_head = SimSiamPredictionHead(output_dim, prediction_dim, output_dim)
        self.criterion = NegativeCosineSimilarity()

    def loss(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """``½ (L(p0, sg(z1)) + L(p1, sg(z0)))`` with ``z`` the projections, ``p`` their predictions and ``sg`` the
        stop-gradient (float32, autocast off, as :meth:`SSLModel.loss`)."""
        z0, z1 = self(x0), self(x1)
        p0, p1 = self.prediction_head(z0), self.prediction_head(z1)
        with torch.autocast(z0.device.type, enabled=False):
            return 0.5 * (
                self.criterion(p0.float(), z1.detach().float()) + self.criterion(p1.float(), z0.detach().float())
            )
