"""Synthetic anomaly sets generated on the fly."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_noise_images(n: int, image_size: int, seed: int, mean: float = 0.5, std: float = 0.25) -> torch.Tensor:
    """``n`` uint8 images ``(n, 3, S, S)`` of i.i.d. Gaussian pixels ``N(mean, std)`` in [0, 1] units, clipped to
    [0, 1] -- the "Gaussian noise" anomaly set of the out-of-distribution literature (Hendrycks & Gimpel 2017).
    Deterministic in ``seed``."""
    if n < 0 or image_size < 1 or std < 0:
        raise ValueError(f"need n >= 0, image_size >= 1 and std >= 0, got {n}, {image_size}, {std}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((n, 3, image_size, image_size), generator=gen) * std + mean
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def synthetic_outlier_images(images: torch.Tensor, n: int, seed: int, block: int = 8) -> torch.Tensor:
    """``n`` uint8 "seen out-of-distribution" images derived from in-distribution ``images`` (N, 3, S, S): four
    equal parts (the remainder goes to the first) of

    - pixel-shuffled images (the first channel's pixels of a random image under a random permutation, grey);
    - inverted images ``255 - x``;
    - heavily blurred images (``block`` x ``block`` average pooling, nearest upsampling back to S);
    - constant grey images, levels evenly spaced over [0, 255].

    A stand-in for the "another dataset as seen OoD" of out-of-distribution mining (Masana et al., BMVC 2018) when
    no second dataset is on disk: none of them is Gaussian noise. Deterministic in ``seed``.

    Raises:
        ValueError: ``images`` not uint8 (N, 3, S, S) with N >= 1, ``n < 0``, or ``block`` not dividing S.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3 or len(images) == 0:
        raise ValueError(f"images must be non-empty uint8 (N, 3, S, S), got {images.dtype} {tuple(images.shape)}")
    size = images.shape[-1]
    if n < 0 or block < 1 or size % block:
        raise ValueError(f"need n >= 0 and a block dividing the image size {size}, got n={n}, block={block}")
    gen = torch.Generator().manual_seed(seed)
    counts = [n // 4 + (1 if i < n % 4 else 0) for i in range(4)]
    pick = [torch.randint(len(images), (c,), generator=gen) for c in counts[:3]]
    src = images[pick[0], :1].reshape(counts[0], -1)
    perm = torch.argsort(torch.rand(src.shape, generator=gen), dim=1)
    shuffled = torch.gather(src, 1, perm).reshape(counts[0], 1, size, size).repeat(1, 3, 1, 1)
    inverted = 255 - images[pick[1]]
    blurred = (
        F.interpolate(F.avg_pool2d(images[pick[2]].float(), block), scale_factor=block, mode="nearest")
        .round()
        .clamp(0, 255)
        .to(torch.uint8)
    )
    levels = torch.linspace(0, 255, counts[3]).round().to(torch.uint8)
    constant = levels[:, None, None, None].expand(counts[3], 3, size, size)
    return torch.cat([shuffled, inverted, blurred, constant]).contiguous()
