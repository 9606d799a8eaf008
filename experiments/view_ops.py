"""PIL's image operations as batched torch ops, for :class:`experiments.views.BatchedSSLViews` (which re-exports them):
bilinear resize matrices, luma, torchvision's hue shift and Pillow's extended-box Gaussian blur, each with a
per-sample parameter. See :mod:`experiments.views` for the op-by-op correspondence with lightly's pipeline."""

from __future__ import annotations

import torch

__all__ = [
    "CROP_RATIO",
    "LUMA",
    "adjust_hue",
    "box_blur_passes",
    "box_blur_weights",
    "grayscale_luma",
    "pil_bilinear_matrix",
    "pil_gaussian_blur",
    "pil_gaussian_blur_radius",
]

#: PIL's ``convert("L")`` weights (ITU-R 601-2 luma).
LUMA = (0.299, 0.587, 0.114)
#: ``RandomResizedCrop``'s aspect-ratio range (lightly does not change torchvision's default).
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)


def pil_gaussian_blur_radius(sigma: torch.Tensor, passes: int = 3) -> torch.Tensor:
    """Pillow's ``_gaussian_blur_radius``: the extended-box radius whose ``passes``-fold self-convolution has standard
    deviation ``sigma`` (Gwosdek, Grewenig, Bruhn, Weickert, "Theoretical foundations of Gaussian convolution by
    extended box filtering", SSVM 2011, eqs. 7, 11, 14)."""
    sigma2 = sigma.double() ** 2 / passes
    length = torch.sqrt(12.0 * sigma2 + 1.0)
    whole = torch.floor((length - 1.0) / 2.0)
    frac = (2 * whole + 1) * (whole * (whole + 1) - 3 * sigma2) / (6 * (sigma2 - (whole + 1) ** 2))
    return whole + frac


def pil_bilinear_matrix(start: torch.Tensor, length: torch.Tensor, in_size: int, out_size: int) -> torch.Tensor:
    """Per-sample ``(N, out_size, in_size)`` matrices of PIL's bilinear resize of the window
    ``[start, start + length)`` of an axis of ``in_size`` pixels to ``out_size`` pixels.

    PIL (``Resample.c``, ``precompute_coeffs``): ``scale = length / out_size``, ``fs = max(scale, 1)``; output pixel
    ``o`` has centre ``c = start + (o + 0.5) scale`` and input pixel ``x`` (inside the window) the weight
    ``max(0, 1 - |x + 0.5 - c| / fs)``, normalised to sum 1.
    """
    start = start.double()[:, None, None]
    length = length.double()[:, None, None]
    scale = length / out_size
    fs = scale.clamp(min=1.0)
    o = torch.arange(out_size, dtype=torch.float64, device=start.device)[None, :, None]
    x = torch.arange(in_size, dtype=torch.float64, device=start.device)[None, None, :]
    center = start + (o + 0.5) * scale
    w = (1.0 - (x + 0.5 - center).abs() / fs).clamp(min=0.0)
    w = w * ((x >= start) & (x < start + length))
    return w / w.sum(-1, keepdim=True)


def grayscale_luma(x: torch.Tensor) -> torch.Tensor:
    """The luma ``0.299 R + 0.587 G + 0.114 B`` of images ``(..., 3, H, W)`` as one channel (PIL's ``convert("L")``
    without its rounding)."""
    r, g, b = x.unbind(-3)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(-3)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """torchvision's tensor ``adjust_hue`` (RGB → HSV, ``h ← (h + shift) mod 1``, back) with a per-sample shift."""
    r, g, b = x.unbind(-3)
    maxc = x.amax(-3)
    minc = x.amin(-3)
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    crd = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / crd, (maxc - g) / crd, (maxc - b) / crd
    is_r = maxc == r
    is_g = (maxc == g) & ~is_r
    h = torch.where(is_r, bc - gc, torch.where(is_g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.remainder(h / 6.0 + shift.view(-1, 1, 1), 1.0)
    # HSV -> RGB in closed form: channel n in (5, 3, 1) is v - v s clamp(min(k, 4 - k), 0, 1), k = (n + 6 h) mod 6
    # (the same values as torchvision's six-sector table)
    k = torch.remainder(torch.tensor([5.0, 3.0, 1.0], device=x.device).view(1, 3, 1, 1) + 6.0 * h.unsqueeze(1), 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    v = maxc.unsqueeze(1)
    return (v - v * s.unsqueeze(1) * ramp).clamp_(0.0, 1.0)


def box_blur_weights(radius: torch.Tensor) -> torch.Tensor:
    """``(N, 2k + 1)`` taps of Pillow's extended box blur (``ImagingHorizontalBoxBlur``) of per-sample float
    ``radius``: ``1 / (2r + 1)`` on the ``2 floor(r) + 1`` central taps, ``(r - floor(r)) / (2r + 1)`` on the next two,
    zero beyond; ``k = floor(max r) + 1``."""
    whole = torch.floor(radius)
    k = int(whole.max().item()) + 1
    inner = 1.0 / (2.0 * radius + 1.0)
    edge = (radius - whole) * inner
    dist = torch.arange(-k, k + 1, device=radius.device, dtype=radius.dtype).abs()[None, :]
    return torch.where(
        dist <= whole[:, None],
        inner[:, None],
        torch.where(dist == whole[:, None] + 1, edge[:, None], torch.zeros_like(dist)),
    )


def box_blur_passes(x: torch.Tensor, taps: torch.Tensor, passes: int) -> torch.Tensor:
    """``passes`` box blurs along the last axis of ``x`` (N, ...) with per-sample ``taps`` (N, 2k + 1), edge pixels
    repeated (as Pillow)."""
    k = (taps.shape[1] - 1) // 2
    w = taps.view(len(taps), *([1] * (x.ndim - 1)), 2 * k + 1)
    n = x.shape[-1]
    for _ in range(passes):
        xp = torch.cat([x[..., :1].expand(*x.shape[:-1], k), x, x[..., -1:].expand(*x.shape[:-1], k)], -1)
        out = xp[..., 0:n] * w[..., 0]
        for t in range(1, 2 * k + 1):
            out = out + xp[..., t : t + n] * w[..., t]
        x = out
    return x


def pil_gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, passes: int = 3) -> torch.Tensor:
    """PIL's ``ImageFilter.GaussianBlur(radius=sigma)`` of float images ``(N, C, H, W)`` with per-sample ``sigma``:
    ``passes`` extended box blurs along x, then along y (Pillow's ``ImagingGaussianBlur``). The taps are computed
    where ``sigma`` lives (keep it on the CPU to avoid a device synchronisation)."""
    taps = box_blur_weights(pil_gaussian_blur_radius(sigma)).to(x.device, x.dtype, non_blocking=True)
    x = box_blur_passes(x, taps, passes)
    return box_blur_passes(x.transpose(-1, -2), taps, passes).transpose(-1, -2)
