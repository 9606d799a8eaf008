"""MVTec AD layout: ``<root>/<category>/train/good``, ``<root>/<category>/test/<defect type>``,
``<root>/<category>/ground_truth/<defect type>/<stem>_mask.png`` (Bergmann et al., CVPR 2019)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from experiments.data.base import DatasetNotFoundError

MVTEC_OBJECTS = (
    "bottle",
    "cable",
    "capsule",
    "hazelnut",
    "metal_nut",
    "pill",
    "screw",
    "toothbrush",
    "transistor",
    "zipper",
)
MVTEC_TEXTURES = ("carpet", "grid", "leather", "tile", "wood")
MVTEC_CATEGORIES = MVTEC_OBJECTS + MVTEC_TEXTURES
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def category_kind(category: str) -> str:
    """``"object"`` or ``"texture"`` for the MVTec categories (and the synthetic ones named ``*_object`` /
    ``*_texture``), else ``"other"``."""
    if category in MVTEC_OBJECTS or category.endswith("_object"):
        return "object"
    if category in MVTEC_TEXTURES or category.endswith("_texture"):
        return "texture"
    return "other"


@dataclass(frozen=True)
class MVTecCategory:
    """One category: normal training images and the defective test images with their defect types.

    Attributes:
        category: Folder name.
        train_images: ``(N, 3, S, S)`` uint8, ``train/good``.
        test_images: ``(M, 3, S, S)`` uint8, every ``test/<defect type>`` except ``good``.
        test_labels: ``(M,)`` int, index into ``defect_types``.
        defect_types: Sorted defect type names.
        masks: ``(M, 1, S, S)`` uint8 0/1 ground-truth masks, or ``None`` without a ``ground_truth`` folder.
        test_paths: File of every test image.
    """

    category: str
    train_images: torch.Tensor
    test_images: torch.Tensor
    test_labels: np.ndarray
    defect_types: tuple[str, ...]
    masks: torch.Tensor | None
    test_paths: tuple[str, ...]

    @property
    def kind(self) -> str:
        return category_kind(self.category)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _read(path: Path, size: int, mask: bool = False) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("L" if mask else "RGB").resize((size, size), Image.NEAREST if mask else Image.BILINEAR)
        return np.asarray(im)


def list_categories(root: str | Path) -> list[str]:
    """Sub-folders of ``root`` with the MVTec layout (``train/good`` and ``test``), sorted."""
    r = Path(root).expanduser()
    if not r.is_dir():
        return []
    return sorted(p.name for p in r.iterdir() if (p / "train" / "good").is_dir() and (p / "test").is_dir())


def load_mvtec_category(root: str | Path, category: str, image_size: int = 224) -> MVTecCategory:
    """Read one category, resized to ``image_size`` (bilinear; masks nearest), grey images on 3 channels.

    Raises:
        DatasetNotFoundError: the category's ``train/good`` or ``test`` folder is missing.
        ValueError: fewer than 2 defect types (nothing to cluster).
    """
    base = Path(root).expanduser() / category
    good, test = base / "train" / "good", base / "test"
    if not good.is_dir() or not test.is_dir():
        raise DatasetNotFoundError(
            f"MVTec AD category {category!r} not found: expected {good} and {test}/<defect type>/"
        )
    defects = tuple(sorted(p.name for p in test.iterdir() if p.is_dir() and p.name != "good"))
    if len(defects) < 2:
        raise ValueError(f"category {category!r} has {len(defects)} defect type(s) under {test}; clustering needs 2")
    train = np.stack([_read(p, image_size) for p in _images(good)])
    paths, labels, images, masks = [], [], [], []
    has_masks = (base / "ground_truth").is_dir()
    for label, defect in enumerate(defects):
        for p in _images(test / defect):
            paths.append(str(p))
            labels.append(label)
            images.append(_read(p, image_size))
            if has_masks:
                m = base / "ground_truth" / defect / f"{p.stem}_mask.png"
                masks.append(
                    (_read(m, image_size, mask=True) > 127).astype(np.uint8)
                    if m.is_file()
                    else np.zeros((image_size, image_size), np.uint8)
                )
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    return MVTecCategory(
        category,
        as_tensor(train),
        as_tensor(np.stack(images)),
        np.asarray(labels),
        defects,
        torch.from_numpy(np.stack(masks))[:, None] if has_masks else None,
        tuple(paths),
    )
