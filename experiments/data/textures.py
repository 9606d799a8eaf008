"""Synthetic texture images (the normal images of :mod:`experiments.anomaly_clustering.synthetic`) as a labelled
dataset: a shipped "other dataset" for out-of-distribution mining and anomaly sets, generated on the fly."""

from __future__ import annotations

import tempfile

import torch

from experiments.data.base import ImageDataset

CLASS_NAMES = ("object", "texture")


def load_textures(
    root: str | None = None, image_size: int = 32, download: bool = False, *, n_per_class: int = 200, seed: int = 0
) -> ImageDataset:
    """``n_per_class`` training and ``n_per_class // 2`` test images per class (the synthetic MVTec categories'
    normal images: textured discs and striped textures), deterministic in ``seed``. ``root`` and ``download`` are
    accepted for a uniform loader signature and ignored."""
    from experiments.anomaly_clustering.mvtec import load_mvtec_category
    from experiments.anomaly_clustering.synthetic import SYNTHETIC_CATEGORIES, make_synthetic_mvtec

    n_test = max(1, n_per_class // 2)
    with tempfile.TemporaryDirectory() as tmp:
        out = make_synthetic_mvtec(
            tmp,
            n_train=n_per_class + n_test,
            n_test_per_defect=1,
            n_test_good=0,
            image_size=max(image_size, 32),
            seed=seed,
        )
        parts = [load_mvtec_category(out, c, image_size).train_images for c in SYNTHETIC_CATEGORIES]
    train = torch.cat([p[:n_per_class] for p in parts])
    test = torch.cat([p[n_per_class:] for p in parts])
    labels = lambda n: torch.arange(2).repeat_interleave(n)  # noqa: E731
    return ImageDataset("textures", CLASS_NAMES, train, labels(n_per_class), test, labels(n_test))


__all__ = ["CLASS_NAMES", "load_textures"]
