"""Reading a lightly ``SimCLRViewTransform`` back into the options of :class:`experiments.views.BatchedSSLViews`
(its ``from_lightly``): each step of the per-image pipeline mapped to the batched view's option, or refused."""

from __future__ import annotations

import math
from typing import Any

from experiments.augment import VIEW_DEFAULTS
from experiments.view_ops import CROP_RATIO

__all__ = ["lightly_view_options"]


def lightly_view_options(transform: Any) -> tuple[int, dict[str, Any]]:
    """``(input_size, options)`` of the batched equivalent of a lightly ``SimCLRViewTransform`` built without
    normalisation (what :func:`experiments.augment.ssl_view_transform` returns).

    Raises:
        ValueError: ``transform`` is not such a transform (e.g. it normalises, rotates by random angles or crops
            with another aspect-ratio range).
    """
    from lightly.transforms.gaussian_blur import GaussianBlur
    from lightly.transforms.rotation import RandomRotate

    steps = getattr(getattr(transform, "transform", None), "transforms", None)
    if steps is None:
        raise ValueError(
            f"cannot convert {type(transform).__name__} to batched views: not a lightly "
            "SimCLRViewTransform; use the per-image pipeline for other view transforms"
        )
    opts: dict[str, Any] = {
        "vf_prob": 0.0,
        "hf_prob": 0.0,
        "rr_prob": 0.0,
        "cj_prob": 0.0,
        "cj_bright": 0.0,
        "cj_contrast": 0.0,
        "cj_sat": 0.0,
        "cj_hue": 0.0,
        "random_gray_scale": 0.0,
        "gaussian_blur": 0.0,
        "sigmas": VIEW_DEFAULTS["sigmas"],
    }
    size = None
    for step in steps:
        name = type(step).__name__
        if name == "RandomResizedCrop":
            if tuple(step.size) != (step.size[0],) * 2 or not all(
                math.isclose(a, b) for a, b in zip(step.ratio, CROP_RATIO, strict=True)
            ):
                raise ValueError(f"unsupported crop {step!r}: need a square size and ratio (3/4, 4/3)")
            if float(step.scale[1]) != 1.0:
                raise ValueError(f"unsupported crop scale {step.scale}: the maximum must be 1")
            size, opts["min_scale"] = int(step.size[0]), float(step.scale[0])
        elif name == "RandomHorizontalFlip":
            opts["hf_prob"] = float(step.p)
        elif name == "RandomVerticalFlip":
            opts["vf_prob"] = float(step.p)
        elif isinstance(step, RandomRotate):
            if step.angle % 360 != 90:
                raise ValueError(f"unsupported rotation angle {step.angle}: only 90 degrees")
            opts["rr_prob"] = float(step.prob)
        elif name == "RandomApply" and len(step.transforms) == 1 and type(step.transforms[0]).__name__ == "ColorJitter":
            cj = step.transforms[0]
            opts["cj_prob"] = float(step.p)
            for key, rng, center in (
                ("cj_bright", cj.brightness, 1.0),
                ("cj_contrast", cj.contrast, 1.0),
                ("cj_sat", cj.saturation, 1.0),
                ("cj_hue", cj.hue, 0.0),
            ):
                opts[key] = 0.0 if rng is None else round(float(rng[1]) - center, 12)
        elif name == "RandomGrayscale":
            opts["random_gray_scale"] = float(step.p)
        elif isinstance(step, GaussianBlur):
            opts["gaussian_blur"], opts["sigmas"] = float(step.prob), tuple(float(s) for s in step.sigmas)
        elif name == "ToTensor":
            pass
        else:
            raise ValueError(f"cannot convert view step {step!r} to batched views")
    if size is None:
        raise ValueError("cannot convert a view transform without a RandomResizedCrop to batched views")
    return size, opts
