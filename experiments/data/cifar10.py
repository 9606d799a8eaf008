"""CIFAR-10 from a local root in torchvision's format (``<root>/cifar-10-batches-py``)."""

from __future__ import annotations

import os
import pickle

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.datasets import CIFAR10

from experiments.data.base import DatasetNotFoundError, ImageDataset

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _batches_present(root: str) -> bool:
    base = os.path.join(root, CIFAR10.base_folder)
    return all(os.path.isfile(os.path.join(base, name)) for name, _ in CIFAR10.train_list + CIFAR10.test_list)


class _LocalCIFAR10(CIFAR10):
    """torchvision's CIFAR-10 reader; integrity means "every batch file is present" rather than matching the
    archive's MD5 sums, so locally converted or trimmed copies in the same pickle format load too."""

    def _check_integrity(self) -> bool:
        return _batches_present(self.root)

    def _load_meta(self) -> None:
        # torchvision checks batches.meta against the archive's MD5 too, which rejects any re-pickled copy; read it
        # without that check, and fall back to the standard names when it is absent (the loader uses CLASS_NAMES).
        path = os.path.join(self.root, self.base_folder, self.meta["filename"])
        classes: list[str] = list(CLASS_NAMES)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                classes = list(pickle.load(f, encoding="latin1")[self.meta["key"]])
        self.classes = classes
        self.class_to_idx = {name: i for i, name in enumerate(classes)}


def load_cifar10(root: str | None, image_size: int = 32, download: bool = False) -> ImageDataset:
    """CIFAR-10's 50 000 training and 10 000 test images (train/test are the official splits).

    Raises:
        DatasetNotFoundError: the batch files are not under ``<root>/cifar-10-batches-py`` and ``download`` is off.
    """
    if not root:
        raise DatasetNotFoundError("dataset 'cifar10' needs dataset.root (the folder holding cifar-10-batches-py)")
    root = os.path.expanduser(root)
    folder = os.path.join(root, _LocalCIFAR10.base_folder)
    if download:
        CIFAR10(root, train=True, download=True)
    elif not _batches_present(root):
        raise DatasetNotFoundError(
            f"CIFAR-10 not found at {folder} (expected data_batch_1..5 and test_batch); "
            f"get it with `python -c \"import torchvision; torchvision.datasets.CIFAR10('{root}', download=True)\"` "
            f"or set dataset.download=true"
        )
    splits = []
    for train in (True, False):
        ds = _LocalCIFAR10(root, train=train, download=False)
        images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
        if image_size != images.shape[-1]:
            images = (
                F.interpolate(images.float(), size=(image_size, image_size), mode="bilinear", align_corners=False)
                .round()
                .clamp(0, 255)
                .to(torch.uint8)
            )
        splits += [images, torch.as_tensor(ds.targets, dtype=torch.int64)]
    return ImageDataset("cifar10", CLASS_NAMES, *splits)
