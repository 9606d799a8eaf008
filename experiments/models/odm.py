"""Metric learning for novelty and anomaly detection with out-of-distribution mining (ODM).

Masana, Ruiz, Serrat, van de Weijer & López, "Metric Learning for Novelty and Anomaly Detection", BMVC 2018
(https://arxiv.org/abs/1808.05492). An embedding is trained with a contrastive loss on the in-distribution classes
(similar pairs pulled together, dissimilar pairs pushed at least ``margin`` apart). With out-of-distribution mining,
a batch of *seen* out-of-distribution images accompanies every step and each of them is pushed at least ``margin``
away from every in-distribution image of the batch (they are never a class of their own; OoD-OoD pairs are not
used). At test time an image is scored by its Euclidean distance to the nearest in-distribution class mean
(:func:`experiments.metrics.detection.nearest_class_mean`).

Example::

    model = ODM(mean, std, backbone="vgg", embed_dim=32, mining=True)
    train_labelled(model, images, labels, TrainSettings(**ODM_DEFAULTS, batch_size=64), ood_images=seen_ood)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from experiments.models.base import EmbedLayer
from experiments.models.labelled import LabelledModel
from experiments.models.pair_losses import DIST_EPS
from experiments.models.resnet import Normalize, resnet20

#: Training defaults on digits / CIFAR-sized inputs (Adam as in the paper's code).
ODM_DEFAULTS = {"epochs": 30, "optimizer": "adam", "lr": 1e-3, "momentum": 0.9, "weight_decay": 5e-4,
                "schedule": "none"}

ODM_BACKBONES = ("vgg", "resnet20")


def small_vgg(embed_dim: int, dropout: float) -> nn.Sequential:
    """The paper's small VGG-style network: three blocks of two 3x3 convolutions (32, 64, 128 channels, batch
    norm, ReLU) each followed by 2x2 max pooling, average-pooled to 4x4, then FC 256 - ReLU - dropout - FC
    ``embed_dim``."""
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.MaxPool2d(2)]

    return nn.Sequential(*block(3, 32), *block(32, 64), *block(64, 128), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                         nn.Linear(128 * 16, 256), nn.ReLU(inplace=True), nn.Dropout(dropout),
                         nn.Linear(256, embed_dim))


class ODM(LabelledModel):
    """Contrastive metric embedding with optional out-of-distribution mining.

    Args:
        mean, std: Per-channel input normalisation (a layer of the model, so the logged weights carry it).
        backbone: ``"vgg"`` (:func:`small_vgg`) or ``"resnet20"`` (CIFAR ResNet-20 + a linear layer to
            ``embed_dim``).
        embed_dim: Dimension of the embedding.
        margin: Contrastive margin: dissimilar pairs and OoD-vs-in-distribution pairs are pushed at least this far
            apart.
        mining: Out-of-distribution mining (needs ``ood`` batches from the training loop).
        dropout: Dropout before the VGG's last layer.

    Loss of a batch (``parts``): ``in`` = the mean over all pairs ``i < j`` of the batch of ``d**2`` (same label)
    or ``max(0, margin - d)**2`` (different labels), the similar and dissimilar pairs averaged separately and
    summed; ``ood`` = the mean of ``max(0, margin - d)**2`` over every (OoD, in-distribution) pair. Total = in + ood.
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], *, backbone: str = "vgg",
                 embed_dim: int = 32, margin: float = 10.0, mining: bool = True, dropout: float = 0.2) -> None:
        super().__init__()
        if backbone not in ODM_BACKBONES:
            raise ValueError(f"unknown ODM backbone {backbone!r}; valid: {', '.join(ODM_BACKBONES)}")
        if embed_dim < 1:
            raise ValueError(f"embed_dim must be >= 1, got {embed_dim}")
        if not margin > 0:
            raise ValueError(f"margin must be > 0, got {margin}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.normalize = Normalize(mean, std)
        if backbone == "vgg":
            self.net: nn.Module = small_vgg(embed_dim, dropout)
        else:
            res = resnet20()
            self.net = nn.Sequential(res, nn.Flatten(), nn.Linear(res.feature_dim, embed_dim))
        self.margin = float(margin)
        self.mining = bool(mining)

    @property
    def uses_ood(self) -> bool:
        return self.mining

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x)).flatten(start_dim=1)

    def embed(self, x: torch.Tensor, layer: EmbedLayer = "backbone") -> torch.Tensor:
        """The metric embedding (the space the paper scores in); ``"projection"`` is the same space."""
        if layer not in ("backbone", "projection"):
            raise ValueError(f"embed layer must be 'backbone' or 'projection', got {layer!r}")
        return self(x)

    def loss(self, x: torch.Tensor, y: torch.Tensor,
             ood: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.mining and ood is not None and len(ood):
            z_all = self(torch.cat([x, ood]))
            z, z_ood = z_all[:len(x)], z_all[len(x):]
        else:
            z, z_ood = self(x), None
        parts = {"in": in_distribution_loss(z, y, self.margin)}
        if self.mining:
            parts["ood"] = (ood_loss(z, z_ood, self.margin) if z_ood is not None
                            else torch.zeros((), device=z.device))
        return sum(parts.values()), parts


def _pairwise_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(dim=-1) + DIST_EPS)


def in_distribution_loss(z: torch.Tensor, y: torch.Tensor, margin: float) -> torch.Tensor:
    """Contrastive loss over all pairs ``i < j`` of the batch: mean ``d**2`` over similar pairs plus mean
    ``max(0, margin - d)**2`` over dissimilar pairs (each 0 when the batch has none)."""
    d = _pairwise_distances(z, z)
    upper = torch.triu(torch.ones_like(d, dtype=torch.bool), diagonal=1)
    same = (y[:, None] == y[None, :]) & upper
    diff = (y[:, None] != y[None, :]) & upper
    zero = z.sum() * 0.0
    pull = d[same].square().mean() if same.any() else zero
    push = F.relu(margin - d[diff]).square().mean() if diff.any() else zero
    return pull + push


def ood_loss(z: torch.Tensor, z_ood: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean ``max(0, margin - d)**2`` over every (out-of-distribution, in-distribution) pair."""
    return F.relu(margin - _pairwise_distances(z_ood, z)).square().mean()


__all__ = ["ODM", "ODM_BACKBONES", "ODM_DEFAULTS", "in_distribution_loss", "ood_loss", "small_vgg"]
