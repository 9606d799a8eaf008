"""Batched SSL views: lightly's SimCLR view pipeline on a whole image batch at once, on any device.

:class:`BatchedSSLViews` draws, per sample, the same random parameters as the per-image pipeline of
:func:`experiments.augment.ssl_view_transform` (lightly ``SimCLRViewTransform`` = torchvision v2 transforms on PIL
images plus lightly's PIL Gaussian blur) and applies them with vectorised torch ops, so a training step needs no
DataLoader workers, no PIL and no per-image Python. The randomness comes from an explicit ``torch.Generator`` (seeded
runs are reproducible, and the generator's state can be checkpointed).

Each step reproduces the PIL operation it replaces, up to PIL's uint8 rounding between steps:

========================  ============================================================================================
per-image (lightly/PIL)   batched (this module)
========================  ============================================================================================
``RandomResizedCrop``     torchvision's crop sampler (10 tries of area ``U(min_scale, 1)`` x log-uniform aspect ratio in
                          [3/4, 4/3], integer box, central fallback), vectorised; then PIL's bilinear resize of the box
                          (triangle filter on half-pixel centres, widened by the scale when downsampling = antialias,
                          taps clipped to the box) written as two per-sample resampling matrices:
                          ``out = Wy @ image @ Wx^T``. The flips are folded into those matrices.
``RandomHorizontalFlip``  rows of ``Wx`` reversed for the flipped samples; vertical flip likewise with ``Wy``.
``RandomRotate`` (90°)    ``torch.rot90`` (counter-clockwise, as PIL) on the rotated samples (square outputs).
``ColorJitter`` (p)       per-sample factors ``b, c, s ~ U(max(0, 1-x), 1+x)``, hue shift ``~ U(-h, h)`` and a
                          per-sample random order of the four ops (torchvision draws ``randperm(4)`` per image). PIL
                          semantics: brightness ``f x``, contrast blends with the (rounded to 1/255) mean of the luma
                          ``0.299 R + 0.587 G + 0.114 B``, saturation with the luma image, each clipped to [0, 1]; hue
                          via torchvision's tensor HSV round trip with a continuous shift (PIL shifts its 8-bit H
                          channel by ``int(255 h)`` steps of 1/256 turn: a difference below 1/255 of a turn).
``RandomGrayscale``       the luma ``0.299 R + 0.587 G + 0.114 B`` (PIL's ``convert("L")``) in all three channels.
``GaussianBlur`` (p)      ``sigma ~ U(sigmas)`` per sample and PIL's own algorithm for ``ImageFilter.GaussianBlur``:
                          three passes of an extended box blur per axis (radius from Gwosdek et al. 2011, as Pillow's
                          ``_gaussian_blur_radius``), edge pixels repeated. No kernel size is involved.
``ToTensor``              the output is float in [0, 1]; unlike PIL it is not rounded to multiples of 1/255.
========================  ============================================================================================

The order of operations (crop, flips, rotation, colour jitter, grayscale, blur) is lightly's. What differs is only
the RNG stream (one generator drawing all parameters of a batch, not torch's and numpy's global generators per
image) and the absence of uint8 rounding between steps; ``tests/test_views.py`` checks both the deterministic ops
against PIL and the output distributions against the per-image pipeline.

Example:
    >>> views = BatchedSSLViews(32)                       # VIEW_DEFAULTS, like ssl_view_transform(32)
    >>> g = torch.Generator().manual_seed(0)
    >>> x0, x1 = views(images_uint8, g), views(images_uint8, g)   # (N, 3, 32, 32) float in [0, 1]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch

from experiments.augment import VIEW_DEFAULTS, ssl_view_transform
from experiments.view_lightly import lightly_view_options
from experiments.view_ops import (
    CROP_RATIO,
    LUMA,
    adjust_hue,
    box_blur_weights,
    grayscale_luma,
    pil_bilinear_matrix,
    pil_gaussian_blur,
    pil_gaussian_blur_radius,
)

__all__ = [
    "CROP_RATIO",
    "LUMA",
    "BatchedSSLViews",
    "ViewParams",
    "box_blur_weights",
    "pil_bilinear_matrix",
    "pil_gaussian_blur",
    "pil_gaussian_blur_radius",
]


@dataclass
class ViewParams:
    """The random parameters of one batch of views; every field has the batch size as its first dimension.

    Attributes:
        top, left, height, width: Crop box in input pixels (int64).
        hflip, vflip, rotate: Whether to flip horizontally / vertically / rotate by 90 degrees counter-clockwise.
        jitter: Whether colour jitter is applied.
        order: ``(N, 4)`` order of the jitter ops (0 brightness, 1 contrast, 2 saturation, 3 hue).
        brightness, contrast, saturation, hue: Jitter factors (hue: shift in turns).
        gray: Whether the view is converted to grayscale.
        blur: Whether the view is blurred.
        sigma: Blur standard deviation in pixels.
    """

    top: torch.Tensor
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor
    hflip: torch.Tensor
    vflip: torch.Tensor
    rotate: torch.Tensor
    jitter: torch.Tensor
    order: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor
    gray: torch.Tensor
    blur: torch.Tensor
    sigma: torch.Tensor

    def __len__(self) -> int:
        return len(self.top)

    def select(self, index: torch.Tensor | slice) -> ViewParams:
        """The parameters of a subset of the samples."""
        return ViewParams(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def _factor_range(value: float, name: str, center: float, bound: tuple[float, float]) -> tuple[float, float] | None:
    """torchvision ``ColorJitter._check_input`` for a single number: ``[center - v, center + v]``, the lower end
    clipped at 0 for brightness/contrast/saturation; ``None`` when the op is the identity."""
    value = float(value)
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    lo, hi = center - value, center + value
    if center == 1.0:
        lo = max(lo, 0.0)
    if not bound[0] <= lo <= hi <= bound[1]:
        raise ValueError(f"{name}={value} gives the range [{lo}, {hi}], outside {list(bound)}")
    return None if lo == hi == center else (lo, hi)


class BatchedSSLViews:
    """lightly's SimCLR view (random resized crop, flips, 90° rotation, colour jitter, grayscale, PIL Gaussian blur)
    applied to a whole batch at once with per-sample random parameters — the distribution of
    :func:`experiments.augment.ssl_view_transform` (see the module docstring for the op-by-op correspondence).

    Args:
        input_size: Side of the square output views.
        **overrides: Any of :data:`experiments.augment.VIEW_DEFAULTS` (``cj_prob, cj_bright, cj_contrast, cj_sat,
            cj_hue, min_scale, random_gray_scale, gaussian_blur, sigmas, vf_prob, hf_prob, rr_prob``).

    Raises:
        ValueError: an unknown option, a probability outside [0, 1], ``min_scale`` outside (0, 1], a jitter strength
            outside torchvision's range or bad ``sigmas``.

    Example:
        >>> views = BatchedSSLViews(32, min_scale=0.2)
        >>> g = torch.Generator().manual_seed(0)
        >>> x = views(images, g)   # images: uint8 (N, 3, H, W) or float in [0, 1], any device
    """

    def __init__(self, input_size: int, **overrides: Any) -> None:
        unknown = set(overrides) - set(VIEW_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown view option(s) {sorted(unknown)}; valid: {sorted(VIEW_DEFAULTS)}")
        if int(input_size) != input_size or input_size < 1:
            raise ValueError(f"input_size must be a positive integer, got {input_size}")
        opts = {**VIEW_DEFAULTS, **overrides}
        opts["sigmas"] = tuple(float(s) for s in opts["sigmas"])
        for key in ("cj_prob", "random_gray_scale", "gaussian_blur", "vf_prob", "hf_prob", "rr_prob"):
            opts[key] = float(opts[key])
            if not 0.0 <= opts[key] <= 1.0:
                raise ValueError(f"{key} is a probability and must lie in [0, 1], got {opts[key]}")
        opts["min_scale"] = float(opts["min_scale"])
        if not 0.0 < opts["min_scale"] <= 1.0:
            raise ValueError(f"min_scale must lie in (0, 1], got {opts['min_scale']}")
        if len(opts["sigmas"]) != 2 or not 0.0 < opts["sigmas"][0] <= opts["sigmas"][1]:
            raise ValueError(f"sigmas must be (min, max) with 0 < min <= max, got {opts['sigmas']}")
        self.input_size = int(input_size)
        self.options: dict[str, Any] = opts
        self.brightness = _factor_range(opts["cj_bright"], "cj_bright", 1.0, (0.0, math.inf))
        self.contrast = _factor_range(opts["cj_contrast"], "cj_contrast", 1.0, (0.0, math.inf))
        self.saturation = _factor_range(opts["cj_sat"], "cj_sat", 1.0, (0.0, math.inf))
        self.hue = _factor_range(opts["cj_hue"], "cj_hue", 0.0, (-0.5, 0.5))

    def __repr__(self) -> str:
        changed = {
            k: v
            for k, v in self.options.items()
            if v != VIEW_DEFAULTS[k] and not (k == "sigmas" and tuple(v) == tuple(VIEW_DEFAULTS[k]))
        }
        args = "".join(f", {k}={v!r}" for k, v in changed.items())
        return f"BatchedSSLViews({self.input_size}{args})"

    # ------------------------------------------------------------------------------------------------ conversions

    def per_image(self):
        """The equivalent per-image lightly transform, :func:`experiments.augment.ssl_view_transform`."""
        return ssl_view_transform(self.input_size, **self.options)

    @classmethod
    def from_lightly(cls, transform: Any) -> BatchedSSLViews:
        """The batched equivalent of a lightly ``SimCLRViewTransform`` built without normalisation (what
        :func:`experiments.augment.ssl_view_transform` returns).

        Raises:
            ValueError: ``transform`` is not such a transform (e.g. it normalises, rotates by random angles or
                crops with another aspect-ratio range).
        """
        size, opts = lightly_view_options(transform)
        return cls(size, **opts)

    # ------------------------------------------------------------------------------------------------ sampling

    def sample(self, n: int, height: int, width: int, generator: torch.Generator | None = None) -> ViewParams:
        """Random parameters of ``n`` views of ``height x width`` images, drawn from ``generator`` (on its device;
        ``None``: torch's default CPU generator), as torchvision and lightly draw them per image."""
        dev = generator.device if generator is not None else torch.device("cpu")

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(shape, generator=generator, device=dev, dtype=torch.float64)

        o = self.options
        # RandomResizedCrop.make_params, ten tries at once
        area = height * width
        lo, hi = o["min_scale"], 1.0
        target = area * (lo + (hi - lo) * rand(n, 10))
        log_lo, log_hi = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
        ratio = torch.exp(log_lo + (log_hi - log_lo) * rand(n, 10))
        w = torch.round(torch.sqrt(target * ratio))
        h = torch.round(torch.sqrt(target / ratio))
        ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        first = ok.to(torch.int8).argmax(1, keepdim=True)
        found = ok.any(1)
        w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
        in_ratio = width / height
        if in_ratio < CROP_RATIO[0]:
            fw, fh = width, round(width / CROP_RATIO[0])
        elif in_ratio > CROP_RATIO[1]:
            fw, fh = round(height * CROP_RATIO[1]), height
        else:
            fw, fh = width, height
        w, h = torch.where(found, w, float(fw)), torch.where(found, h, float(fh))
        u_top, u_left = rand(n), rand(n)
        top = torch.where(found, torch.floor(u_top * (height - h + 1)), float((height - fh) // 2))
        left = torch.where(found, torch.floor(u_left * (width - w + 1)), float((width - fw) // 2))

        def coin(p: float) -> torch.Tensor:
            return rand(n) < p

        hflip, vflip, rotate = coin(o["hf_prob"]), coin(o["vf_prob"]), coin(o["rr_prob"])
        jitter = coin(o["cj_prob"])
        order = torch.argsort(rand(n, 4), dim=1)  # a uniform random permutation per sample

        def factors(rng: tuple[float, float] | None, identity: float) -> torch.Tensor:
            u = rand(n)
            return torch.full_like(u, identity) if rng is None else rng[0] + (rng[1] - rng[0]) * u

        brightness, contrast = factors(self.brightness, 1.0), factors(self.contrast, 1.0)
        saturation, hue = factors(self.saturation, 1.0), factors(self.hue, 0.0)
        gray = coin(o["random_gray_scale"])
        blur = coin(o["gaussian_blur"])
        s_lo, s_hi = o["sigmas"]
        sigma = s_lo + (s_hi - s_lo) * rand(n)
        return ViewParams(
            top.long(),
            left.long(),
            h.long(),
            w.long(),
            hflip,
            vflip,
            rotate,
            jitter,
            order,
            brightness,
            contrast,
            saturation,
            hue,
            gray,
            blur,
            sigma,
        )

    # ------------------------------------------------------------------------------------------------ applying

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Views of ``images`` (uint8 ``(N, 3, H, W)`` or float in [0, 1]) as float32 ``(N, 3, S, S)`` in [0, 1] on
        the images' device, with fresh parameters from ``generator``."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected an RGB image batch (N, 3, H, W), got shape {tuple(images.shape)}")
        return self.apply(images, self.sample(len(images), images.shape[-2], images.shape[-1], generator))

    def apply(self, images: torch.Tensor, params: ViewParams) -> torch.Tensor:
        """The views of ``images`` with the given parameters (deterministic)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected an RGB image batch (N, 3, H, W), got shape {tuple(images.shape)}")
        if len(params) != len(images):
            raise ValueError(f"{len(params)} view parameters for {len(images)} images")
        dev = images.device
        n, _, height, width = images.shape
        x = images.float().div_(255.0) if not images.is_floating_point() else images.float()
        if n == 0:
            return x.new_zeros((0, 3, self.input_size, self.input_size))
        s = self.input_size
        # crop + resize (+ flips) as two resampling matrices, built where the parameters live, then moved
        wy = pil_bilinear_matrix(params.top, params.height, height, s)
        wx = pil_bilinear_matrix(params.left, params.width, width, s)
        wx = torch.where(params.hflip[:, None, None], wx.flip(1), wx)
        wy = torch.where(params.vflip[:, None, None], wy.flip(1), wy)
        wy = wy.to(dev, torch.float32, non_blocking=True)
        wx = wx.to(dev, torch.float32, non_blocking=True)
        x = torch.matmul(torch.matmul(wy.unsqueeze(1), x), wx.transpose(1, 2).unsqueeze(1))
        x = x.clamp_(0.0, 1.0)

        def subset(mask: torch.Tensor) -> torch.Tensor | None:
            # index decisions are taken on the parameters' device (the CPU by default): no device synchronisation
            idx = mask.nonzero().squeeze(1)
            return None if len(idx) == 0 else idx.to(dev, non_blocking=True)

        if self.options["rr_prob"] > 0:
            idx = subset(params.rotate)
            if idx is not None:
                x.index_copy_(0, idx, torch.rot90(x.index_select(0, idx), 1, dims=(-2, -1)))
        if self.options["cj_prob"] > 0:
            x = self._jitter(x, params, subset)
        if self.options["random_gray_scale"] > 0:
            idx = subset(params.gray)
            if idx is not None:
                x.index_copy_(0, idx, grayscale_luma(x.index_select(0, idx)).expand(-1, 3, -1, -1))
        if self.options["gaussian_blur"] > 0:
            idx = subset(params.blur)
            if idx is not None:
                sigma = params.sigma[params.blur]
                x.index_copy_(0, idx, pil_gaussian_blur(x.index_select(0, idx), sigma))
        return x

    def _jitter(self, x: torch.Tensor, params: ViewParams, subset) -> torch.Tensor:
        """torchvision's ColorJitter with per-sample factors and a per-sample order of the four ops."""
        jit = params.jitter
        for step in range(4):
            op = params.order[:, step]
            # brightness, contrast and saturation are all blends f x + (1 - f) d with a degenerate image d
            blend = jit & (op < 3)
            if self.brightness is None:
                blend = blend & (op != 0)
            if self.contrast is None:
                blend = blend & (op != 1)
            if self.saturation is None:
                blend = blend & (op != 2)
            idx = subset(blend)
            if idx is not None:
                sel = blend.nonzero().squeeze(1)
                op_s = op[sel]
                f = torch.stack([params.brightness[sel], params.contrast[sel], params.saturation[sel]], 1)
                f = f.gather(1, op_s[:, None]).squeeze(1)
                f = f.to(x.device, torch.float32, non_blocking=True).view(-1, 1, 1, 1)
                kind = op_s.to(x.device, non_blocking=True).view(-1, 1, 1, 1)
                xs = x.index_select(0, idx)
                luma = grayscale_luma(xs)
                # PIL's Contrast blends with int(mean luma + 0.5), in 1/255 units
                mean = torch.floor(luma.mean((-3, -2, -1), keepdim=True) * 255.0 + 0.5) / 255.0
                degenerate = torch.where(kind == 0, torch.zeros_like(luma), torch.where(kind == 1, mean, luma))
                x.index_copy_(0, idx, (f * xs + (1.0 - f) * degenerate).clamp_(0.0, 1.0))
            if self.hue is not None:
                hue = jit & (op == 3)
                idx = subset(hue)
                if idx is not None:
                    shift = params.hue[hue].to(x.device, torch.float32, non_blocking=True)
                    x.index_copy_(0, idx, adjust_hue(x.index_select(0, idx), shift))
        return x
