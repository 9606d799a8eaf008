"""A small synthetic dataset in the MVTec AD layout, generated on the fly (no download), for the demo and tests.

Two categories: ``synthetic_object`` (a textured disc on a plain background) and ``synthetic_texture`` (a striped,
noisy texture). Defect types differ in shape and colour: ``scratch`` (a thin bright red line), ``hole`` (a dark
round hole), ``stain`` (a blurred blue-green blob). Every defective image has its ground-truth mask.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SYNTHETIC_CATEGORIES = ("synthetic_object", "synthetic_texture")
DEFECT_TYPES = ("hole", "scratch", "stain")
_MARKER = ".synthetic_mvtec.json"


def synthetic_root(cache_dir: str | Path | None = None) -> Path:
    """Default location: ``cache_dir``, else ``$SWEEPER_DATA_DIR/synthetic_mvtec``, else
    ``~/.cache/sweeper/synthetic_mvtec``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    base = os.environ.get("SWEEPER_DATA_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "sweeper") / "synthetic_mvtec"


def _normal(category: str, size: int, rng: np.random.Generator) -> Image.Image:
    yy, xx = np.mgrid[0:size, 0:size] / size
    if category.endswith("_texture"):
        angle = rng.uniform(0, np.pi)
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * 6 * (xx * np.cos(angle) + yy * np.sin(angle)))
        base = np.array([150.0, 120.0, 90.0]) + 50 * stripes[..., None]
    else:
        base = np.full((size, size, 3), 200.0)
        r = np.hypot(xx - 0.5 + rng.normal(0, 0.02), yy - 0.5 + rng.normal(0, 0.02))
        inside = r < 0.33
        base[inside] = np.array([120.0, 130.0, 150.0])
    base += rng.normal(0, 8, base.shape)
    return Image.fromarray(base.clip(0, 255).astype(np.uint8))


def _defect(image: Image.Image, defect: str, size: int, rng: np.random.Generator) -> tuple[Image.Image, Image.Image]:
    mask = Image.new("L", (size, size), 0)
    cx, cy = rng.uniform(0.3, 0.7, 2) * size
    draw, mdraw = ImageDraw.Draw(image), ImageDraw.Draw(mask)
    if defect == "scratch":
        angle, length = rng.uniform(0, np.pi), rng.uniform(0.35, 0.5) * size
        dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
        line, width = [(cx - dx, cy - dy), (cx + dx, cy + dy)], max(1, size // 32)
        draw.line(line, fill=(230, 30, 30), width=width)
        mdraw.line(line, fill=255, width=width)
    elif defect == "hole":
        r = rng.uniform(0.08, 0.12) * size
        box = [cx - r, cy - r, cx + r, cy + r]
        draw.ellipse(box, fill=(15, 15, 15))
        mdraw.ellipse(box, fill=255)
    else:  # stain
        r = rng.uniform(0.12, 0.18) * size
        blob = Image.new("L", (size, size), 0)
        ImageDraw.Draw(blob).ellipse([cx - r, cy - r * 0.7, cx + r, cy + r * 0.7], fill=200)
        blob = blob.filter(ImageFilter.GaussianBlur(r / 3))
        colour = Image.new("RGB", (size, size), (40, 170, 150))
        image = Image.composite(colour, image, blob)
        mask = blob.point(lambda v: 255 if v > 60 else 0)
    return image, mask


def make_synthetic_mvtec(
    root: str | Path | None = None,
    *,
    categories: tuple[str, ...] = SYNTHETIC_CATEGORIES,
    n_train: int = 16,
    n_test_per_defect: int = 8,
    n_test_good: int = 4,
    image_size: int = 64,
    seed: int = 0,
) -> Path:
    """Write the synthetic set under ``root`` (default :func:`synthetic_root`) in the MVTec layout and return it.

    Deterministic in ``seed``; a folder already generated with the same parameters is reused as it is.
    """
    out = synthetic_root(root)
    params = {
        "categories": list(categories),
        "n_train": n_train,
        "n_test_per_defect": n_test_per_defect,
        "n_test_good": n_test_good,
        "image_size": image_size,
        "seed": seed,
        "defects": list(DEFECT_TYPES),
    }
    marker = out / _MARKER
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return out
    for ci, category in enumerate(categories):
        rng = np.random.default_rng([seed, ci])
        base = out / category
        for folder in [
            "train/good",
            "test/good",
            *(f"test/{d}" for d in DEFECT_TYPES),
            *(f"ground_truth/{d}" for d in DEFECT_TYPES),
        ]:
            (base / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n_train):
            _normal(category, image_size, rng).save(base / "train" / "good" / f"{i:03d}.png")
        for i in range(n_test_good):
            _normal(category, image_size, rng).save(base / "test" / "good" / f"{i:03d}.png")
        for defect in DEFECT_TYPES:
            for i in range(n_test_per_defect):
                image, mask = _defect(_normal(category, image_size, rng), defect, image_size, rng)
                image.save(base / "test" / defect / f"{i:03d}.png")
                mask.save(base / "ground_truth" / defect / f"{i:03d}_mask.png")
    marker.write_text(json.dumps(params))
    return out
