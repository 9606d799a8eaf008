"""Weakly-supervised metric embeddings: siamese / triplet (variational) autoencoders.

An encoder-decoder whose latent space is shaped both by reconstruction and by a metric loss on constraints drawn
from each batch's labels -- **pairwise** constraints (A, B similar or dissimilar; contrastive loss with a margin,
Hadsell et al., CVPR 2006) or **triplet** constraints (B closer to A than C; triplet margin loss, Schroff et al.,
CVPR 2015). The objective of a batch is

    loss = M * metric + (1 - M) * (reconstruction + kl_weight * KL)

with ``M = metric_weight``; the KL term (``KL(N(mu, sigma^2) || N(0, I))`` summed over latent dimensions, averaged
over the batch; Kingma & Welling 2014) exists for the variational encoder only. ``M -> 1`` behaves like a siamese /
triplet network, ``M -> 0`` like a plain (V)AE. Distances for the metric term are taken between latent codes (the mean
``mu`` for the VAE). The reconstruction is the mean squared error in the input feature space.

Input features: ``raw`` normalised pixels, ``hog`` (histograms of oriented gradients of the grey image,
``skimage.feature.hog``; Dalal & Triggs, CVPR 2005) or ``backbone`` (the 64-d global-pool features of a frozen
ResNet-20 loaded from a state-dict file, e.g. the ``model/weights.pt`` of an SSL trial).

Example::

    model = WeakMetricAE((3, 32, 32), mean, std, constraint="triplet", encoder="vae", metric_weight=0.9)
    train_labelled(model, images, labels, TrainSettings(**WEAK_METRIC_DEFAULTS, batch_size=64))
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from experiments.models.base import EmbedLayer
from experiments.models.checkpoints import LoadedCheckpoint, load_weights
from experiments.models.labelled import LabelledModel
from experiments.models.pair_losses import contrastive_loss, sample_pairs, sample_triplets, triplet_loss
from experiments.models.resnet import Normalize, resnet20

log = logging.getLogger(__name__)

#: Training defaults (Adam, as autoencoders are usually trained).
WEAK_METRIC_DEFAULTS = {
    "epochs": 30,
    "optimizer": "adam",
    "lr": 1e-3,
    "momentum": 0.9,
    "weight_decay": 0.0,
    "schedule": "none",
}

CONSTRAINTS = ("pairwise", "triplet")
ENCODERS = ("ae", "vae")
FEATURES = ("raw", "hog", "backbone")

#: HOG settings for 32-px inputs: 9 orientations, 8x8-pixel cells, 2x2-cell blocks (324 values at 32 px).
HOG_OPTIONS = {"orientations": 9, "pixels_per_cell": (8, 8), "cells_per_block": (2, 2)}


def hog_features(x: torch.Tensor) -> torch.Tensor:
    """HOG descriptors of images ``x`` in [0, 1] ``(B, 3, H, W)`` (grey = channel mean), computed on the CPU with
    ``skimage.feature.hog`` (about 0.2 ms per 32-px image); float32 ``(B, F)`` on ``x``'s device."""
    from skimage.feature import hog

    grey = x.detach().float().mean(dim=1).cpu().numpy()
    out = np.stack([hog(g, feature_vector=True, **HOG_OPTIONS) for g in grey]).astype(np.float32)
    return torch.from_numpy(out).to(x.device)


def load_resnet20_backbone(path: str | Path) -> tuple[nn.Module, Normalize | None, LoadedCheckpoint]:
    """``(net, normalize, checkpoint)``: a frozen ResNet-20 with every tensor loaded from the checkpoint file at
    ``path`` by :func:`experiments.models.checkpoints.load_weights` (a plain ``resnet20().state_dict()``, an SSL
    model's ``model/weights.pt`` -- keys ``backbone.*``, heads dropped -- or akamaster's CIFAR ResNet-20); a partial
    fit raises ``ValueError``. ``normalize`` is the input normalisation the checkpoint records (the SSL model's
    ``normalize.*``), else ``None``."""
    net = resnet20()
    checkpoint = load_weights(net, path, name="resnet20")
    normalize = Normalize(*checkpoint.normalization) if checkpoint.normalization else None
    return net.requires_grad_(False).eval(), normalize, checkpoint


def _mlp(sizes: Sequence[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class WeakMetricAE(LabelledModel):
    """Siamese / triplet (variational) autoencoder (see the module docstring for the objective).

    Args:
        input_shape: ``(3, H, W)`` of the images.
        mean, std: Per-channel input normalisation (a layer of the model).
        constraint: ``"pairwise"`` (contrastive loss) or ``"triplet"`` (triplet margin loss).
        encoder: ``"ae"`` (deterministic) or ``"vae"`` (Gaussian latent, reparameterised).
        metric_weight: ``M`` in ``[0, 1]``.
        latent_dim: Dimension of the latent code (the embedding).
        margin: Margin of the metric loss.
        dropout: Dropout after every hidden layer.
        hidden: Hidden layer widths of the encoder (the decoder mirrors them).
        features: ``"raw"``, ``"hog"`` or ``"backbone"`` (needs ``backbone_weights``).
        backbone_weights: State-dict file of the frozen ResNet-20 for ``features="backbone"``.
        kl_weight: Weight of the KL term (VAE only).
        label_map: Label merging before constraints are drawn (``{3: 0, 5: 0}`` makes 3, 5 and 0 one composite
            label); labels not in the map stay as they are.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        constraint: str = "pairwise",
        encoder: str = "ae",
        metric_weight: float = 0.5,
        latent_dim: int = 16,
        margin: float = 1.0,
        dropout: float = 0.2,
        hidden: Sequence[int] = (256, 128),
        features: str = "raw",
        backbone_weights: str | None = None,
        kl_weight: float = 1.0,
        label_map: dict[Any, Any] | None = None,
    ) -> None:
        super().__init__()
        if constraint not in CONSTRAINTS:
            raise ValueError(f"constraint must be one of {', '.join(CONSTRAINTS)}, got {constraint!r}")
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, got {encoder!r}")
        if features not in FEATURES:
            raise ValueError(f"features must be one of {', '.join(FEATURES)}, got {features!r}")
        if not 0.0 <= metric_weight <= 1.0:
            raise ValueError(f"metric_weight (M) must be in [0, 1], got {metric_weight}")
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        if not margin > 0:
            raise ValueError(f"margin must be > 0, got {margin}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {kl_weight}")
        if any(int(h) < 1 for h in hidden):
            raise ValueError(f"hidden layer widths must be >= 1, got {list(hidden)}")
        if features == "backbone" and not backbone_weights:
            raise ValueError("features='backbone' needs backbone_weights (a ResNet-20 state-dict file)")
        self.constraint, self.encoder_type, self.features_kind = constraint, encoder, features
        self.metric_weight, self.margin, self.kl_weight = float(metric_weight), float(margin), float(kl_weight)
        self.label_map = {int(k): int(v) for k, v in (label_map or {}).items()}
        self.normalize = Normalize(mean, std)
        self.backbone: nn.Module | None = None
        self.checkpoint: LoadedCheckpoint | None = None
        if features == "backbone":
            self.backbone, own, self.checkpoint = load_resnet20_backbone(backbone_weights)  # type: ignore[arg-type]
            if own is not None:
                self.normalize = own
            in_dim = int(self.backbone.feature_dim)
        elif features == "hog":
            in_dim = int(hog_features(torch.zeros(1, *input_shape)).shape[1])
        else:
            in_dim = int(np.prod(input_shape))
        self.in_dim = in_dim
        widths = [in_dim, *map(int, hidden)]
        self.encoder = _mlp(widths, dropout)
        self.to_latent = nn.Linear(widths[-1], latent_dim * (2 if encoder == "vae" else 1))
        self.decoder = nn.Sequential(_mlp([latent_dim, *widths[::-1][:-1]], dropout), nn.Linear(widths[1], in_dim))
        self.latent_dim = latent_dim

    def train(self, mode: bool = True) -> WeakMetricAE:
        super().train(mode)
        if self.backbone is not None:
            self.backbone.eval()  # frozen: its batch-norm statistics never change
        return self

    def input_features(self, x: torch.Tensor) -> torch.Tensor:
        """The vector the autoencoder encodes and reconstructs, for images ``x`` in [0, 1]."""
        if self.features_kind == "hog":
            return hog_features(x)
        if self.features_kind == "backbone":
            with torch.no_grad():
                return self.backbone(self.normalize(x)).flatten(start_dim=1)  # type: ignore[misc]
        return self.normalize(x).flatten(start_dim=1)

    def encode(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(mu, logvar)`` of features ``f`` (``logvar`` is ``None`` for the deterministic encoder)."""
        h = self.to_latent(self.encoder(f))
        if self.encoder_type == "vae":
            mu, logvar = h.chunk(2, dim=1)
            return mu, logvar.clamp(-20.0, 20.0)
        return h, None

    def map_labels(self, y: torch.Tensor) -> torch.Tensor:
        if not self.label_map:
            return y
        out = y.clone()
        for src, dst in self.label_map.items():
            out[y == src] = dst
        return out

    def metric_term(self, mu: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The metric loss of constraints drawn from labels ``y`` (after ``label_map``) on the codes ``mu``."""
        y = self.map_labels(y)
        if self.constraint == "pairwise":
            a, b, similar = sample_pairs(y)
            return contrastive_loss(mu[a], mu[b], similar, self.margin)
        a, p, n = sample_triplets(y)
        return triplet_loss(mu[a], mu[p], mu[n], self.margin)

    def loss(
        self, x: torch.Tensor, y: torch.Tensor, ood: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        f = self.input_features(x)
        mu, logvar = self.encode(f)
        z = mu
        parts: dict[str, torch.Tensor] = {}
        if logvar is not None:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            parts["kl"] = kl_divergence(mu, logvar)
        parts["reconstruction"] = F.mse_loss(self.decoder(z), f)
        parts["metric"] = self.metric_term(mu, y)
        m = self.metric_weight
        total = m * parts["metric"] + (1 - m) * (parts["reconstruction"] + self.kl_weight * parts.get("kl", 0.0))
        return total, parts

    def embed(self, x: torch.Tensor, layer: EmbedLayer = "backbone") -> torch.Tensor:
        """The latent code (``mu`` for the VAE); ``"backbone"`` and ``"projection"`` both name it."""
        if layer not in ("backbone", "projection"):
            raise ValueError(f"embed layer must be 'backbone' or 'projection', got {layer!r}")
        return self.encode(self.input_features(x))[0]


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` summed over latent dimensions, averaged over the batch:
    ``-0.5 * sum(1 + logvar - mu**2 - exp(logvar))``."""
    return (-0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(dim=1)).mean()


def latent_view_figure(embeddings: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> Any:
    """A 2-D view of the latent space coloured by class: the codes themselves when 2-D, else their first two
    principal components (``sklearn.decomposition.PCA``)."""
    from matplotlib.figure import Figure
    from sklearn.decomposition import PCA

    z = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    if z.shape[1] > 2:
        xy, axes = PCA(n_components=2, random_state=0).fit_transform(z), ("PC 1", "PC 2")
    else:
        xy = np.pad(z, ((0, 0), (0, 2 - z.shape[1])))
        axes = ("z 1", "z 2")
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.add_subplot()
    for label in np.unique(labels):
        pts = xy[labels == label]
        name = class_names[int(label)] if 0 <= int(label) < len(class_names) else str(label)
        ax.scatter(pts[:, 0], pts[:, 1], s=6, label=name, alpha=0.7)
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.legend(markerscale=2, fontsize=7, loc="best")
    ax.set_title("latent space by class")
    return fig


__all__ = [
    "CONSTRAINTS",
    "ENCODERS",
    "FEATURES",
    "WEAK_METRIC_DEFAULTS",
    "WeakMetricAE",
    "hog_features",
    "kl_divergence",
    "latent_view_figure",
    "load_resnet20_backbone",
]
