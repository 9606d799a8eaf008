"""scikit-learn's ``load_digits`` (8x8 handwritten digits, 10 classes, shipped in the wheel): the embedded default."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits as _sklearn_digits
from sklearn.model_selection import train_test_split

from experiments.data.base import ImageDataset

CLASS_NAMES = tuple(str(i) for i in range(10))


def load_digits(
    root: str | None = None,
    image_size: int = 32,
    download: bool = False,
    *,
    test_fraction: float = 0.3,
    split_seed: int = 0,
) -> ImageDataset:
    """The 1 797 digits, upsampled bilinearly from 8x8 to ``image_size`` and repeated on 3 channels.

    The held-out split is a stratified ``test_fraction`` of every class (``sklearn.model_selection.train_test_split``
    seeded with ``split_seed``), so each class has about 126 training and 54 test images by default.
    ``root`` and ``download`` are accepted for a uniform loader signature and ignored: the data ships with scikit-learn.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    bunch = _sklearn_digits()
    pixels = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    if image_size != pixels.shape[-1]:
        pixels = F.interpolate(pixels, size=(image_size, image_size), mode="bilinear", align_corners=False)
    images = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).repeat(1, 3, 1, 1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, stratify=labels.numpy(), random_state=split_seed
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return ImageDataset("digits", CLASS_NAMES, images[train_idx], labels[train_idx], images[test_idx], labels[test_idx])
