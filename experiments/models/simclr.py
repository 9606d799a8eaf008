"""SimCLR (Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", ICML 2020,
https://arxiv.org/abs/2002.05709) with lightly's projection head and NT-Xent loss."""

from __future__ import annotations

from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from torch import nn

from experiments.models.base import SSLModel


class SimCLR(SSLModel):
    """SimCLR on a given backbone.

    Args:
        backbone: Maps images to ``feature_dim`` features.
        feature_dim: Backbone output size (64 for ResNet-20).
        mean, std: Per-channel input normalisation.
        hidden_dim: Projection head hidden size (default ``feature_dim``, as proj18).
        output_dim: Projection size (default 128).
        temperature: NT-Xent temperature (default 0.5, lightly's default).

    Example:
        >>> model = SimCLR(resnet20(), 64, mean=(0.5,) * 3, std=(0.25,) * 3)
        >>> loss = model.loss(view0, view1)
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        hidden_dim: int | None = None,
        output_dim: int = 128,
        temperature: float = 0.5,
    ) -> None:
        super().__init__(backbone, mean, std)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.projection_head = SimCLRProjectionHead(feature_dim, hidden_dim or feature_dim, output_dim)
        self.criterion = NTXentLoss(temperature=temperature)
