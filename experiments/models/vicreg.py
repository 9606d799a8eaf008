"""VICReg (Bardes, Ponce and LeCun, "VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised
Learning", ICLR 2022, https://arxiv.org/abs/2105.04906) with lightly's projection head and loss.

As lightly's CIFAR-10 benchmark (``benchmarks/cifar10_benchmark.py``, ``VICRegModel``): projection head
``BarlowTwinsProjectionHead(d, 2048, 2048)`` and ``VICRegLoss()`` (λ = μ = 25, ν = 1). The benchmark trains it with
LARS (lr 0.3 per 128 images, weight decay 1e-4, warm-up), which the sweeper does not have; plain SGD at the other
methods' rate (0.06) diverges on ResNet-20 within three epochs on digits, so the defaults are SGD with lr 0.005,
momentum 0.9, weight decay 5e-4, cosine schedule, 200 epochs.
"""

from __future__ import annotations

from lightly.loss import VICRegLoss
from lightly.models.modules import BarlowTwinsProjectionHead
from torch import nn

from experiments.models.base import SSLModel

TRAIN_DEFAULTS = {
    "epochs": 200,
    "optimizer": "sgd",
    "lr": 0.005,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "schedule": "cosine",
}


class VICReg(SSLModel):
    """VICReg on a given backbone: ``criterion(z0, z1)`` is lightly's variance-invariance-covariance loss."""

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        hidden_dim: int = 2048,
        output_dim: int = 2048,
        lambda_param: float = 25.0,
        mu_param: float = 25.0,
        nu_param: float = 1.0,
    ) -> None:
        super().__init__(backbone, mean, std)
        self.projection_head = BarlowTwinsProjectionHead(feature_dim, hidden_dim, output_dim)
        self.criterion = VICRegLoss(lambda_param=lambda_param, mu_param=mu_param, nu_param=nu_param)
