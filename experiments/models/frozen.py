"""Frozen encoders: a backbone that is not trained, embedding images with its pooled features -- the generic-encoder
baseline (does single-class SSL training beat a pretrained or random encoder at telling the training class apart?).

The backbone is one of the anomaly-clustering family's (:data:`experiments.anomaly_clustering.BACKBONES`:
torchvision ``resnet18`` / ``resnet50`` / ``wide_resnet50_2``, timm ViTs, the CIFAR ``resnet20``), built without
downloading anything and loaded by the one checkpoint loader (:func:`experiments.models.checkpoints.load_weights`,
through :func:`experiments.anomaly_clustering.load_backbone`), which loads every backbone tensor or refuses the file:
a local checkpoint file, or (resolved to a file by the sweeper) the weights a run logged (``run:<id>`` /
``trial:<key>``). No weights: random initialisation, and ``random_init`` is true.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from experiments.anomaly_clustering.features import IMAGENET_MEAN, IMAGENET_STD, load_backbone
from experiments.models.base import EmbedLayer
from experiments.models.resnet import Normalize

log = logging.getLogger(__name__)

NORMALIZATIONS = ("imagenet", "data")

Stats = tuple[tuple[float, ...], tuple[float, ...]]


def _channel_values(value: Any, what: str, channels: int) -> tuple[float, ...]:
    """``value`` as ``channels`` finite floats (``std`` entries must also be > 0)."""
    if not isinstance(value, (list, tuple)) or len(value) != channels:
        raise ValueError(f"normalize.{what} must be a list of {channels} numbers, got {value!r}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise ValueError(f"normalize.{what} must hold finite numbers, got {value!r}")
    if what == "std" and min(value) <= 0:
        raise ValueError(f"normalize.std must be > 0, got {value!r}")
    return tuple(float(v) for v in value)


def normalization_stats(normalize: str | Mapping[str, Any], data_stats: Stats) -> Stats:
    """``(mean, std)`` of the ``normalize`` option: ``"imagenet"`` (the statistics torchvision and timm weights were
    trained with), ``"data"`` (``data_stats``, the dataset's channel statistics) or ``{"mean": [...], "std":
    [...]}`` (one value per channel, ``std > 0``); anything else raises ``ValueError``."""
    if isinstance(normalize, Mapping):
        if set(normalize) != {"mean", "std"}:
            raise ValueError(f"normalize as a mapping needs exactly the keys mean and std, got {sorted(normalize)}")
        channels = len(data_stats[0])
        return _channel_values(normalize["mean"], "mean", channels), _channel_values(normalize["std"], "std", channels)
    if normalize == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD
    if normalize == "data":
        return tuple(data_stats[0]), tuple(data_stats[1])
    raise ValueError(
        f"normalize must be one of {', '.join(NORMALIZATIONS)} or {{mean: [...], std: [...]}}, got {normalize!r}"
    )


def _same_stats(a: Stats, b: Stats, tol: float = 1e-6) -> bool:
    """Whether two ``(mean, std)`` pairs agree channel by channel within ``tol``."""
    flat_a, flat_b = [*a[0], *a[1]], [*b[0], *b[1]]
    return len(a[0]) == len(b[0]) and all(abs(x - y) <= tol for x, y in zip(flat_a, flat_b, strict=True))


class FrozenEncoder(nn.Module):
    """A backbone whose parameters never train (``requires_grad`` off, always in eval mode).

    Args:
        mean, std: The dataset's channel statistics (used with ``normalize="data"``).
        backbone: A name of :data:`experiments.anomaly_clustering.BACKBONES` (default ``resnet18``).
        weights: A local checkpoint file, or ``None`` for random initialisation.
        normalize: The input normalisation: ``"imagenet"`` (default), ``"data"`` or ``{"mean": [...], "std":
            [...]}`` (:func:`normalization_stats`). A checkpoint that records its own (the sweep's SSL weights) is
            not overridden silently: a warning names it when ``normalize`` differs.
        image_size: The input side (a ViT's patch grid is built for it).

    Attributes:
        checkpoint: The :class:`~experiments.models.checkpoints.LoadedCheckpoint` (file hash, tensors loaded), or
            ``None`` for random initialisation (``random_init``).
    """

    def __init__(
        self,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        backbone: str = "resnet18",
        weights: str | Path | None = None,
        normalize: str | Mapping[str, Any] = "imagenet",
        image_size: int = 32,
    ) -> None:
        super().__init__()
        stats = normalization_stats(normalize, (tuple(mean), tuple(std)))
        net, _kind, self.checkpoint = load_backbone(backbone, weights, image_size)
        self.backbone = net.requires_grad_(False)
        own = self.checkpoint.normalization if self.checkpoint else None
        if own is not None and not _same_stats(own, stats):
            log.warning(
                "backbone weights %s were trained with input mean %s, std %s; normalize=%r uses %s, %s "
                "(give normalize: {mean: ..., std: ...} to use the checkpoint's)",
                self.checkpoint.path,  # type: ignore[union-attr]
                list(own[0]),
                list(own[1]),
                normalize,
                list(stats[0]),
                list(stats[1]),
            )
        self.normalize = Normalize(*stats)
        self.eval()

    @property
    def random_init(self) -> bool:
        """Whether the backbone is randomly initialised (no checkpoint was loaded)."""
        return self.checkpoint is None

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
