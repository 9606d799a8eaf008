"""Augmentations: the SSL view pipeline (lightly) and the perturbations whose effect on embeddings is studied.

Perturbations act on float image batches in [0, 1] of shape ``(N, C, H, W)`` and draw their randomness from an
explicit ``torch.Generator`` so a trial's seed fixes them. ``AUGMENTATIONS[name](**params)`` builds one; the names are
the values of a sweep's ``augmentation`` axis.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torchvision.transforms.v2.functional as TF
from lightly.transforms import SimCLRViewTransform
from torch.utils.data import Dataset

#: proj18 built its views with lightly's ``ImageCollateFunction`` defaults (lightly < 1.6); these are those values.
VIEW_DEFAULTS: dict[str, Any] = {
    "cj_prob": 0.8,
    "cj_bright": 0.7,
    "cj_contrast": 0.7,
    "cj_sat": 0.7,
    "cj_hue": 0.2,
    "min_scale": 0.15,
    "random_gray_scale": 0.2,
    "gaussian_blur": 0.5,
    "sigmas": (0.2, 2.0),
    "vf_prob": 0.0,
    "hf_prob": 0.5,
    "rr_prob": 0.0,
}


def ssl_view_transform(input_size: int, **overrides: Any) -> SimCLRViewTransform:
    """lightly's SimCLR view (random resized crop, flip, colour jitter, grayscale, blur) at ``input_size``.

    Defaults are :data:`VIEW_DEFAULTS`; any ``SimCLRViewTransform`` argument can be overridden. Normalisation is left
    to the model (its first layer), so the views stay in [0, 1] and the studied perturbations can act on them.
    """
    unknown = set(overrides) - set(VIEW_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown view option(s) {sorted(unknown)}; valid: {sorted(VIEW_DEFAULTS)}")
    params = {**VIEW_DEFAULTS, **overrides}
    params["sigmas"] = tuple(params["sigmas"])
    return SimCLRViewTransform(input_size=input_size, normalize=None, **params)


class TwoViews(Dataset):
    """Two independent SSL views of every image of a uint8 ``(N, 3, H, W)`` tensor, as float tensors in [0, 1]."""

    def __init__(self, images: torch.Tensor, view: Callable[[Any], torch.Tensor]) -> None:
        self.images = images
        self.view = view

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = TF.to_pil_image(self.images[i])
        return self.view(image), self.view(image)


@dataclass
class Perturbation:
    """A named, parameterised perturbation of image batches in [0, 1]."""

    name: str
    params: dict[str, float] = field(default_factory=dict)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if images.ndim != 4:
            raise ValueError(f"expected an image batch (N, C, H, W), got shape {tuple(images.shape)}")
        return self.apply(images, generator)

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return images


class NoPerturbation(Perturbation):
    """The identity: clean images."""

    def __init__(self) -> None:
        super().__init__("none", {})


class GaussianNoise(Perturbation):
    """Additive i.i.d. Gaussian pixel noise, ``x + sigma * N(0, 1)``, clipped to [0, 1].

    Args:
        sigma: Noise standard deviation in [0, 1] intensity units (default 0.1).
    """

    def __init__(self, sigma: float = 0.1) -> None:
        if sigma < 0:
            raise ValueError(f"gaussian_noise.sigma must be >= 0, got {sigma}")
        super().__init__("gaussian_noise", {"sigma": float(sigma)})

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
        return (images + self.params["sigma"] * noise).clamp_(0.0, 1.0)


class GaussianBlur(Perturbation):
    """Deterministic Gaussian blur (``torchvision.transforms.v2.functional.gaussian_blur``).

    Args:
        sigma: Standard deviation of the kernel in pixels (default 1.0).
        kernel_size: Odd kernel side; default ``2 * ceil(3 * sigma) + 1``.
    """

    def __init__(self, sigma: float = 1.0, kernel_size: int | None = None) -> None:
        if sigma <= 0:
            raise ValueError(f"gaussian_blur.sigma must be > 0, got {sigma}")
        if kernel_size is None:
            kernel_size = 2 * int(-(-3 * sigma // 1)) + 1
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"gaussian_blur.kernel_size must be a positive odd integer, got {kernel_size}")
        super().__init__("gaussian_blur", {"sigma": float(sigma), "kernel_size": int(kernel_size)})

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        k = self.params["kernel_size"]
        return TF.gaussian_blur(images, kernel_size=[k, k], sigma=[self.params["sigma"]] * 2)


class NonRigid(Perturbation):
    """Random elastic (non-rigid) warp per image (Simard et al., 2003), as ``torchvision.transforms.v2.ElasticTransform``.

    A displacement field uniform in [-1, 1] is smoothed by a Gaussian of ``sigma`` pixels, scaled by ``alpha``
    (pixels of displacement before smoothing) and applied with bilinear resampling.

    Args:
        alpha: Displacement magnitude in pixels (default 20).
        sigma: Smoothness of the field in pixels (default 4).
    """

    def __init__(self, alpha: float = 20.0, sigma: float = 4.0) -> None:
        if alpha < 0 or sigma <= 0:
            raise ValueError(f"non_rigid needs alpha >= 0 and sigma > 0, got alpha={alpha}, sigma={sigma}")
        super().__init__("non_rigid", {"alpha": float(alpha), "sigma": float(sigma)})

    def apply(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n, _, h, w = images.shape
        sigma, alpha = self.params["sigma"], self.params["alpha"]
        k = int(8 * sigma + 1)
        k += 1 - k % 2
        out = torch.empty_like(images)
        for i in range(n):
            field = torch.rand((2, 1, h, w), generator=generator, device=images.device) * 2 - 1
            field = TF.gaussian_blur(field, kernel_size=[k, k], sigma=[sigma, sigma])
            displacement = torch.cat([field[0] * alpha / w, field[1] * alpha / h], 0).permute(1, 2, 0)[None]
            out[i] = TF.elastic(images[i], displacement=displacement)
        return out


AUGMENTATIONS: dict[str, Callable[..., Perturbation]] = {
    "none": NoPerturbation,
    "gaussian_noise": GaussianNoise,
    "gaussian_blur": GaussianBlur,
    "non_rigid": NonRigid,
}


def make_augmentation(name: str, **params: Any) -> Perturbation:
    """``AUGMENTATIONS[name](**params)`` with errors that list the valid names and parameters."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; valid: {', '.join(AUGMENTATIONS)}")
    try:
        return AUGMENTATIONS[name](**params)
    except TypeError as exc:
        valid = ", ".join(inspect.signature(AUGMENTATIONS[name]).parameters) or "none"
        raise ValueError(f"bad parameters for augmentation {name!r}: {exc}; valid parameters: {valid}") from None
