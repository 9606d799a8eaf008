"""Embedding images with a trained model, optionally under a perturbation."""

from __future__ import annotations

import copy
from typing import Literal

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
    dtype: Literal["float32", "float64"] = "float32",
) -> np.ndarray:
    """Embeddings of uint8 ``images`` (N, 3, H, W) as a ``(N, d)`` array of ``dtype``.

    The model runs in eval mode; ``perturb`` (drawing from ``generator``) is applied to the [0, 1] images first;
    with ``l2_normalize`` every embedding is scaled to unit Euclidean norm (proj18's setting), computed in float64
    so that large activations (an unstable model) do not overflow the norm.

    ``dtype="float32"`` (default): the forward pass runs in float32 and the (normalised) embeddings are rounded to
    float32 -- every later metric is exact relative to these rounded values, not to the real-valued network
    output. ``dtype="float64"``: the forward pass runs on a float64 copy of the model (the weights convert
    exactly) on float64 images, and the embeddings stay float64 (slower, twice the memory and artifact size).

    Raises:
        ValueError: an embedding is NaN or infinite (the model diverged).
    """
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    wide = dtype == "float64"
    model = (copy.deepcopy(model).double() if wide else model).eval().to(device)
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device).float().div_(255.0)
        if perturb is not None:
            x = perturb(x, generator)
        z = model.embed(x.double() if wide else x, layer).double()
        bad = int((~torch.isfinite(z)).sum())
        if bad:
            raise ValueError(f"embeddings contain {bad} NaN/inf values: the model diverged (lower the learning rate)")
        if l2_normalize:
            z = F.normalize(z, dim=1)
        out.append((z if wide else z.float()).cpu())
    if not out:
        return np.zeros((0, 0), dtype=np.float64 if wide else np.float32)
    return torch.cat(out).numpy()
