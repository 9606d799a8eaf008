"""What a trial loads before training: its training split, the seen out-of-distribution images a mining model
trains with, the anomaly sets of the detection scores, and its model options with run-logged weights resolved
(shared by every family, the anomaly-clustering one included)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mlflow.tracking import MlflowClient

from experiments.data import DATASETS, ImageDataset
from experiments.data.noise import gaussian_noise_images, synthetic_outlier_images
from experiments.metrics.detection import DETECTION_METRIC_NAMES
from sweeper import tracking
from sweeper.config import SweepConfig, TrialSpec


def train_split(data: ImageDataset, classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Training images of ``classes`` in dataset order, with their labels."""
    wanted = torch.tensor([data.class_index(c) for c in classes])
    keep = torch.isin(data.train_labels, wanted)
    return data.train_images[keep], data.train_labels[keep]


def seen_ood_images(cfg: SweepConfig, data: ImageDataset, train_images: torch.Tensor) -> torch.Tensor:
    """The seen out-of-distribution images a mining model trains with: the training images of ``ood.seen_classes``
    and of ``ood.seen_dataset`` (at most ``max_seen_images`` of them, drawn with ``dataset.subset_seed``), then
    ``ood.seen_synthetic`` synthetic outliers derived from ``train_images`` (the trial's own)."""
    o = cfg.ood
    if not o.has_seen_source:
        raise ValueError(
            f"model {cfg.grid.model} mines seen OoD images: set ood.seen_classes, ood.seen_dataset or "
            "ood.seen_synthetic"
        )
    parts = []
    if o.seen_classes:
        parts.append(train_split(data, o.seen_classes)[0])
    if o.seen_dataset:
        parts.append(DATASETS[o.seen_dataset].load(o.seen_root, cfg.dataset.image_size, False).train_images)
    images = torch.cat(parts) if parts else train_images[:0]
    if o.max_seen_images is not None and len(images) > o.max_seen_images:
        pick = np.sort(
            np.random.default_rng(cfg.dataset.subset_seed).choice(len(images), o.max_seen_images, replace=False)
        )
        images = images[torch.from_numpy(pick)]
    if o.seen_synthetic:
        size = train_images.shape[-1]
        images = torch.cat(
            [
                images,
                synthetic_outlier_images(
                    train_images, o.seen_synthetic, seed=cfg.dataset.subset_seed, block=math.gcd(8, size)
                ),
            ]
        )
    return images


def anomaly_sets(cfg: SweepConfig, spec: TrialSpec, pixel_stats: tuple[float, float]) -> dict[str, torch.Tensor]:
    """The anomaly sets of the detection scores: Gaussian noise images (pixel mean and std from ``ood`` or else
    ``pixel_stats``, the training images') and other datasets' test images (empty when no detection score is
    configured)."""
    if not any(m in DETECTION_METRIC_NAMES for m in cfg.score.metric_names):
        return {}
    o, size = cfg.ood, cfg.dataset.image_size
    sets: dict[str, torch.Tensor] = {}
    if o.noise_images:
        sets["gaussian_noise"] = gaussian_noise_images(
            o.noise_images,
            size,
            seed=spec.seed + 104729,
            mean=pixel_stats[0] if o.noise_mean is None else o.noise_mean,
            std=pixel_stats[1] if o.noise_std is None else o.noise_std,
        )
    for name, root in o.anomaly_datasets.items():
        images = DATASETS[name].load(root, size, False).test_images
        if len(images) > o.max_anomaly_images:
            pick = np.sort(np.random.default_rng(spec.seed).choice(len(images), o.max_anomaly_images, replace=False))
            images = images[torch.from_numpy(pick)]
        sets[name] = images
    return sets


def resolve_model_options(
    cfg: SweepConfig, spec: TrialSpec, client: MlflowClient | None, experiment_id: str | None
) -> dict[str, Any]:
    """The trial's model options with ``backbone_weights`` / ``weights`` given as ``"trial:<trial key>"`` /
    ``"run:<run id>"`` resolved to a local file (the ``model/weights.pt`` that run logged)."""
    options = cfg.model_options(spec)
    for key in ("backbone_weights", "weights"):
        ref = options.get(key)
        if isinstance(ref, str) and ref.startswith(("trial:", "run:")):
            if client is None:
                raise ValueError(f"{key} from a run needs the tracking store")
            source = tracking.resolve_weights_run(client, experiment_id, ref)
            path = Path(tempfile.mkdtemp(prefix="sweeper-backbone-"))
            options[key] = client.download_artifacts(source, "model/weights.pt", str(path))
    return options
