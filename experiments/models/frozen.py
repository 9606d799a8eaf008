"""Frozen encoders: a backbone that is not trained, embedding images with its pooled features -- the generic-encoder
baseline (does single-class SSL training beat a pretrained or random encoder at telling the training class apart?).

The backbone is one of the anomaly-clustering family's (:data:`experiments.anomaly_clustering.BACKBONES`:
torchvision ``resnet18`` / ``resnet50`` / ``wide_resnet50_2``, timm ViTs, the CIFAR ``resnet20``), built without
downloading anything and loaded by the same resolver (:func:`experiments.anomaly_clustering.load_backbone`): a
local state-dict file, or (resolved to a file by the sweeper) the weights a run logged (``run:<id>`` /
``trial:<key>``). No weights: random initialisation, and ``random_init`` is true.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from experiments.anomaly_clustering.features import IMAGENET_MEAN, IMAGENET_STD, load_backbone
from experiments.models.base import EmbedLayer
from experiments.models.resnet import Normalize

NORMALIZATIONS = ("imagenet", "data")


class FrozenEncoder(nn.Module):
    """A backbone whose parameters never train (``requires_grad`` off, always in eval mode).

    Args:
        mean, std: The dataset's channel statistics (used with ``normalize="data"``).
        backbone: A name of :data:`experiments.anomaly_clustering.BACKBONES` (default ``resnet18``).
        weights: A local state-dict file, or ``None`` for random initialisation.
        normalize: ``"imagenet"`` (the statistics torchvision and timm weights were trained with, default) or
            ``"data"``.
        image_size: The input side (a ViT's patch grid is built for it).
    """

    def __init__(
        self,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        backbone: str = "resnet18",
        weights: str | Path | None = None,
        normalize: str = "imagenet",
        image_size: int = 32,
    ) -> None:
        super().__init__()
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")
        net, _kind, self.random_init = load_backbone(backbone, weights, image_size)
        if isinstance(getattr(net, "fc", None), nn.Linear):  # torchvision ResNets: the pooled features
            net.fc = nn.Identity()
        self.backbone = net.requires_grad_(False)
        stats = (IMAGENET_MEAN, IMAGENET_STD) if normalize == "imagenet" else (tuple(mean), tuple(std))
        self.normalize = Normalize(*stats)
        self.eval()

    def train(self, mode: bool = True) -> FrozenEncoder:
        """Stays in eval mode: batch-norm statistics are part of the frozen weights."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize(x)).flatten(start_dim=1)

    def embed(self, x: torch.Tensor, layer: EmbedLayer = "backbone") -> torch.Tensor:
        """The pooled backbone features of images in [0, 1] (no projection head: both layers are the features)."""
        if layer not in ("backbone", "projection"):
            raise ValueError(f"embed layer must be 'backbone' or 'projection', got {layer!r}")
        return self(x)
