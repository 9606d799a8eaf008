"""Embedding images with a trained model, optionally under a perturbation."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from experiments.augment import Perturbation
from experiments.models.base import EmbedLayer, SSLModel


@torch.no_grad()
def embed_images(
    model: SSLModel,
    images: torch.Tensor,
    *,
    layer: EmbedLayer = "backbone",
    l2_normalize: bool = True,
    perturb: Perturbation | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Embeddings of uint8 ``images`` (N, 3, H, W) as a float32 ``(N, d)`` array.

    The model runs in eval mode; ``perturb`` (drawing from ``generator``) is applied to the [0, 1] images first;
    with ``l2_normalize`` every embedding is scaled to unit Euclidean norm (proj18's setting), computed in float64
    so that large activations (an unstable model) do not overflow the norm.

    Raises:
        ValueError: an embedding is NaN or infinite (the model diverged).
    """
    model.eval().to(device)
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device).float().div_(255.0)
        if perturb is not None:
            x = perturb(x, generator)
        z = model.embed(x, layer).double()
        bad = int((~torch.isfinite(z)).sum())
        if bad:
            raise ValueError(f"embeddings contain {bad} NaN/inf values: the model diverged (lower the learning rate)")
        if l2_normalize:
            z = F.normalize(z, dim=1)
        out.append(z.float().cpu())
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(out).numpy()
