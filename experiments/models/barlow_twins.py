"""Barlow Twins (Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy Reduction", ICML 2021,
https://arxiv.org/abs/2103.03230) with lightly's projection head and loss."""

from __future__ import annotations

from lightly.loss import BarlowTwinsLoss
from lightly.models.modules import BarlowTwinsProjectionHead
from torch import nn

from experiments.models.base import SSLModel


class BarlowTwins(SSLModel):
    """Barlow Twins on a given backbone.

    Args:
        backbone: Maps images to ``feature_dim`` features.
        feature_dim: Backbone output size (64 for ResNet-20).
        mean, std: Per-channel input normalisation.
        hidden_dim: Projection head hidden size (default 2048).
        output_dim: Projection size (default 512, as proj18; the paper uses 8192).
        lambda_param: Weight of the redundancy-reduction term (default 5e-3, the paper's).

    Example:
        >>> model = BarlowTwins(resnet20(), 64, mean=(0.5,) * 3, std=(0.25,) * 3)
        >>> loss = model.loss(view0, view1)
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        hidden_dim: int = 2048,
        output_dim: int = 512,
        lambda_param: float = 5e-3,
    ) -> None:
        super().__init__(backbone, mean, std)
        self.projection_head = BarlowTwinsProjectionHead(feature_dim, hidden_dim, output_dim)
        self.criterion = BarlowTwinsLoss(lambda_param=lambda_param, gather_distributed=False)
