"""What every self-supervised model in the registry shares: a normalising backbone, a projection head, a loss."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from experiments.models.resnet import Normalize

EmbedLayer = Literal["backbone", "projection"]


class SSLModel(nn.Module):
    """A backbone with input normalisation, a projection head and a two-view loss.

    Subclasses set ``projection_head`` and ``criterion``; ``loss(x0, x1)`` is the training objective on two views
    of the same images, ``embed(x, layer)`` the representation that is studied.
    """

    projection_head: nn.Module
    criterion: nn.Module

    def __init__(self, backbone: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.backbone = backbone

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone output (global-pool features) of images in [0, 1]."""
        return self.backbone(self.normalize(x)).flatten(start_dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection_head(self.features(x))

    def loss(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """``criterion(self(x0).float(), self(x1).float())`` with the criterion run in float32 and autocast off.

        Under autocast (bf16 on a GPU) the projections come out in bf16; lightly's criteria then work on them in
        place (Barlow Twins: ``div_``, ``diagonal().add_(-1).pow_(2)``), and in-place ops bypass autocast, so the
        cross-correlation matrix would stay bf16 (its 512 diagonal entries collapse to a handful of values). The
        backbone and head stay under the caller's autocast; only the loss is computed in full precision.
        """
        z0, z1 = self(x0), self(x1)
        with torch.autocast(z0.device.type, enabled=False):
            return self.criterion(z0.float(), z1.float())

    def embed(self, x: torch.Tensor, layer: EmbedLayer = "backbone") -> torch.Tensor:
        """The studied representation: the backbone features or the projection-head output."""
        if layer == "backbone":
            return self.features(x)
        if layer == "projection":
            return self(x)
        raise ValueError(f"embed layer must be 'backbone' or 'projection', got {layer!r}")
