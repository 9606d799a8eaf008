"""Embedding a trial's anomaly sets under the trial's evaluation perturbation.

With ``train.augmentation_at`` ``eval`` or ``both`` the in-distribution and novelty test images are embedded under the
trial's perturbation; the anomaly sets (``gaussian_noise``, every ``ood.anomaly_datasets`` set) must be too, or the
detection scores compare perturbed in-distribution images with clean anomalies and the perturbation's bias decides
the score. Each set is perturbed with its own generator, seeded from the trial's seed and the set's name
(:func:`perturbation_seed`), so a set's perturbation does not depend on which other sets are configured or their
order. Which sets were perturbed is logged as the run's tag :data:`PERTURBED_TAG`.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from experiments.augment import Perturbation
from experiments.embed import embed_images

#: Run tag listing the evaluated sets embedded under the perturbation (comma-separated; empty when none).
PERTURBED_TAG = "sweeper.eval_perturbed"


def perturbation_seed(trial_seed: int, set_name: str) -> int:
    """Seed of a set's perturbation generator: ``trial_seed * 2**32 + crc32(set_name)`` (a non-negative int63)."""
    return (int(trial_seed) * 2**32 + zlib.crc32(set_name.encode())) % 2**63


def embed_anomaly_sets(
    model: torch.nn.Module,
    sets: Mapping[str, torch.Tensor],
    perturb: Perturbation | None,
    trial_seed: int,
    device: torch.device,
    **embed_kw: Any,
) -> dict[str, np.ndarray]:
    """Embeddings of every anomaly set, under ``perturb`` (when given) drawn from the set's own generator."""
    out = {}
    for name, images in sets.items():
        generator = None
        if perturb is not None:
            generator = torch.Generator(device=device).manual_seed(perturbation_seed(trial_seed, name))
        out[name] = embed_images(model, images, perturb=perturb, generator=generator, device=device, **embed_kw)
    return out
