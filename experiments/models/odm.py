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
from experiments.models.pair_losses import pair_distance
from experiments.models.resnet import AvgPool, Normalize, resnet20

#: Training defaults on digits / CIFAR-sized inputs (Adam as in the paper's code).
ODM_DEFAULTS = {
    "epochs": 30,
    "optimizer": "adam",
    "lr": 1e-3,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "schedule": "none",
}

ODM_BACKBONES = ("vgg", "resnet20")


def small_vgg(embed_dim: int, dropout: float) -> nn.Sequential:
    """A small VGG-style network in the spirit of the paper's digit experiments (the exact layers are ours):
    three blocks of two 3x3 convolutions (32, 64, 128 channels, each with batch norm and ReLU) followed by 2x2 max
    pooling, adaptive average pooling to 4x4, then FC 2048 -> 256, ReLU, dropout, FC 256 -> ``embed_dim``."""

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]

    return nn.Sequential(
        *block(3, 32),
        *block(32, 64),
        *block(64, 128),
        AvgPool(4),  # AdaptiveAvgPool2d(4) with a deterministic CUDA backward
        nn.Flatten(),
        nn.Linear(128 * 16, 256),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(256, embed_dim),
    )


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
        n_pairs: Pairs per step for each term: ``None`` uses every pair of the batch (every ``i < j`` for ``in``,
            every (OoD, in-distribution) combination for ``ood``); an integer draws that many pairs at random from
            the batch with torch's global generator (:func:`sample_batch_pairs`, :func:`sample_ood_pairs`).
        dropout: Dropout before the VGG's last layer.

    Loss of a batch (``parts``): ``in`` = :func:`contrastive_pair_loss` of the in-distribution pairs, the mean of
    ``d**2`` over same-label pairs plus the mean of ``max(0, margin - d)**2`` over different-label pairs; ``ood``
    (only with mining) = :func:`ood_pair_loss`, the mean of ``max(0, margin - d)**2`` over (OoD, in-distribution)
    pairs. Total = in + ood. Both halves of a batch go through the network together (batch-norm statistics of the
    mixed batch).

    Raises:
        ValueError: an unknown backbone, ``embed_dim < 1``, ``margin <= 0``, ``n_pairs < 1`` or dropout outside
            ``[0, 1)``.
    """

    def __init__(
        self,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        backbone: str = "vgg",
        embed_dim: int = 32,
        margin: float = 10.0,
        mining: bool = True,
        n_pairs: int | None = None,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if backbone not in ODM_BACKBONES:
            raise ValueError(f"unknown ODM backbone {backbone!r}; valid: {', '.join(ODM_BACKBONES)}")
        if embed_dim < 1:
            raise ValueError(f"embed_dim must be >= 1, got {embed_dim}")
        if not margin > 0:
            raise ValueError(f"margin must be > 0, got {margin}")
        if n_pairs is not None and n_pairs < 1:
            raise ValueError(f"n_pairs must be >= 1 or None, got {n_pairs}")
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
        self.n_pairs = n_pairs

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

    def loss(
        self, x: torch.Tensor, y: torch.Tensor, ood: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.mining and ood is not None and len(ood):
            z_all = self(torch.cat([x, ood]))
            z, z_ood = z_all[: len(x)], z_all[len(x) :]
        else:
            z, z_ood = self(x), None
        parts = {"in": contrastive_pair_loss(z, *sample_batch_pairs(y, self.n_pairs), self.margin)}
        if self.mining:
            parts["ood"] = (
                ood_pair_loss(z, z_ood, *sample_ood_pairs(len(z), len(z_ood), self.n_pairs, z.device), self.margin)
                if z_ood is not None
                else z.sum() * 0.0
            )
        return sum(parts.values()), parts


def sample_batch_pairs(
    labels: torch.Tensor, n_pairs: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """In-distribution pairs of a batch: ``(first, second, similar)`` index tensors and same-label flags.

    ``n_pairs=None``: every pair ``i < j`` of the batch (deterministic). Otherwise ``n_pairs`` pairs drawn with torch's
    global generator (seeded by the training loop): ``first`` uniform over the batch, ``second`` uniform over the
    *other* images (so ``first != second``); pairs may repeat. ``similar[k] = labels[first[k]] == labels[second[k]]``.

    Raises:
        ValueError: fewer than 2 labels, or ``n_pairs < 1``.
    """
    n = len(labels)
    if n < 2:
        raise ValueError(f"need at least 2 images to form pairs, got {n}")
    if n_pairs is None:
        first, second = torch.triu_indices(n, n, offset=1, device=labels.device)
    else:
        if n_pairs < 1:
            raise ValueError(f"n_pairs must be >= 1 or None, got {n_pairs}")
        first = torch.randint(n, (n_pairs,), device=labels.device)
        second = (first + torch.randint(1, n, (n_pairs,), device=labels.device)) % n
    return first, second, labels[first] == labels[second]


def sample_ood_pairs(
    n_in: int, n_ood: int, n_pairs: int | None = None, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(out-of-distribution, in-distribution) pairs of a batch: ``(ood_index, in_index)``.

    ``n_pairs=None``: every combination (OoD-OoD pairs are never formed: the seen OoD images are not a class).
    Otherwise ``n_pairs`` pairs, both indices uniform, from torch's global generator.

    Raises:
        ValueError: an empty group, or ``n_pairs < 1``.
    """
    if n_in < 1 or n_ood < 1:
        raise ValueError(f"need in- and out-of-distribution images, got {n_in} and {n_ood}")
    if n_pairs is None:
        grid = torch.cartesian_prod(torch.arange(n_ood, device=device), torch.arange(n_in, device=device))
        return grid[:, 0], grid[:, 1]
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1 or None, got {n_pairs}")
    return (torch.randint(n_ood, (n_pairs,), device=device), torch.randint(n_in, (n_pairs,), device=device))


def contrastive_pair_loss(
    z: torch.Tensor, first: torch.Tensor, second: torch.Tensor, similar: torch.Tensor, margin: float
) -> torch.Tensor:
    """Contrastive loss (Hadsell, Chopra & LeCun 2006) of given pairs, similar and dissimilar pairs averaged
    separately and summed:

    ``mean_{similar} d_ij**2 + mean_{dissimilar} max(0, margin - d_ij)**2``, ``d_ij = ||z_i - z_j||_2``;

    a group without pairs contributes 0 (still a graph node)."""
    d = pair_distance(z[first], z[second])
    zero = z.sum() * 0.0
    pull = d[similar].square().mean() if bool(similar.any()) else zero
    push = F.relu(margin - d[~similar]).square().mean() if bool((~similar).any()) else zero
    return pull + push


def ood_pair_loss(
    z: torch.Tensor, z_ood: torch.Tensor, ood_index: torch.Tensor, in_index: torch.Tensor, margin: float
) -> torch.Tensor:
    """Out-of-distribution mining term of given pairs: ``mean max(0, margin - ||z_ood[o] - z[i]||)**2`` -- every
    pair is dissimilar, so an OoD image costs nothing once it is at least ``margin`` from the in-distribution
    images it is paired with."""
    return F.relu(margin - pair_distance(z_ood[ood_index], z[in_index])).square().mean()


def in_distribution_loss(z: torch.Tensor, y: torch.Tensor, margin: float) -> torch.Tensor:
    """:func:`contrastive_pair_loss` over all pairs ``i < j`` of the batch: mean ``d**2`` over similar pairs plus
    mean ``max(0, margin - d)**2`` over dissimilar pairs (each 0 when the batch has none)."""
    return contrastive_pair_loss(z, *sample_batch_pairs(y), margin)


def ood_loss(z: torch.Tensor, z_ood: torch.Tensor, margin: float) -> torch.Tensor:
    """:func:`ood_pair_loss` over every (out-of-distribution, in-distribution) pair."""
    return ood_pair_loss(z, z_ood, *sample_ood_pairs(len(z), len(z_ood), device=z.device), margin)


__all__ = [
    "ODM",
    "ODM_BACKBONES",
    "ODM_DEFAULTS",
    "contrastive_pair_loss",
    "in_distribution_loss",
    "ood_loss",
    "ood_pair_loss",
    "sample_batch_pairs",
    "sample_ood_pairs",
    "small_vgg",
]
