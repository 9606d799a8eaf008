"""Synthetic anomaly sets generated on the fly."""

from __future__ import annotations

import torch


def gaussian_noise_images(n: int, image_size: int, seed: int, mean: float = 0.5, std: float = 0.25) -> torch.Tensor:
    """``n`` uint8 images ``(n, 3, S, S)`` of i.i.d. Gaussian pixels ``N(mean, std)`` in [0, 1] units, clipped to
    [0, 1] -- the "Gaussian noise" anomaly set of the out-of-distribution literature (Hendrycks & Gimpel 2017).
    Deterministic in ``seed``."""
    if n < 0 or image_size < 1 or std < 0:
        raise ValueError(f"need n >= 0, image_size >= 1 and std >= 0, got {n}, {image_size}, {std}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((n, 3, image_size, image_size), generator=gen) * std + mean
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)
