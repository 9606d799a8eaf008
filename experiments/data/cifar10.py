"""CIFAR-10 from a local root in torchvision's format (``<root>/cifar-10-batches-py``).

The batch files are pickles; they are read by :mod:`experiments.data.safe_pickle`'s restricted unpickler, never by
``pickle.load`` (torchvision's reader), so a crafted batch cannot run code. Integrity means "every batch file is present
and is a CIFAR batch" rather than matching the archive's MD5 sums, so converted or trimmed copies load too; torchvision
is used only to download (``dataset.download: true``).
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.datasets import CIFAR10
from torchvision.datasets.utils import download_and_extract_archive

from experiments.data.base import DatasetNotFoundError, ImageDataset
from experiments.data.safe_pickle import load_cifar_batch, load_cifar_meta

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)


def _batches_present(root: str) -> bool:
    base = os.path.join(root, CIFAR10.base_folder)
    return all(os.path.isfile(os.path.join(base, name)) for name in TRAIN_BATCHES + TEST_BATCHES)


def _read_split(folder: str, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The batches ``names`` of ``folder`` concatenated, each read by the restricted unpickler (no code runs)."""
    parts = [load_cifar_batch(os.path.join(folder, name)) for name in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def require_cifar10(root: str | None) -> None:
    """Raise ``DatasetNotFoundError`` (naming the expected folder and how to get the data) unless every batch file
    is under ``<root>/cifar-10-batches-py``; reads no file."""
    if not root:
        raise DatasetNotFoundError("dataset 'cifar10' needs dataset.root (the folder holding cifar-10-batches-py)")
    root = os.path.expanduser(root)
    if not _batches_present(root):
        raise DatasetNotFoundError(
            f"CIFAR-10 not found at {os.path.join(root, CIFAR10.base_folder)} (expected data_batch_1..5 and "
            f"test_batch); get it with `python -c \"import torchvision; torchvision.datasets.CIFAR10('{root}', "
            f'download=True)"` or set dataset.download=true'
        )


def load_cifar10(root: str | None, image_size: int = 32, download: bool = False) -> ImageDataset:
    """CIFAR-10's 50 000 training and 10 000 test images (train/test are the official splits).

    Raises:
        DatasetNotFoundError: the batch files are not under ``<root>/cifar-10-batches-py`` and ``download`` is off.
        DatasetCorruptError: a batch file is not a CIFAR-10 batch (random bytes, a pickle naming other globals).
    """
    root = os.path.expanduser(root or "")
    if download and root and not _batches_present(root):  # torchvision's archive, MD5-checked; not its reader
        download_and_extract_archive(CIFAR10.url, root, filename=CIFAR10.filename, md5=CIFAR10.tgz_md5)
    require_cifar10(root)
    folder = os.path.join(root, CIFAR10.base_folder)
    meta = os.path.join(folder, "batches.meta")
    if os.path.isfile(meta):  # only checked: the loader names classes by CLASS_NAMES, the files' label order
        load_cifar_meta(meta)
    splits = []
    for names in (TRAIN_BATCHES, TEST_BATCHES):
        data, labels = _read_split(folder, names)
        images = torch.from_numpy(np.ascontiguousarray(data)).permute(0, 3, 1, 2).contiguous()
        if image_size != images.shape[-1]:
            images = (
                F.interpolate(images.float(), size=(image_size, image_size), mode="bilinear", align_corners=False)
                .round()
                .clamp(0, 255)
                .to(torch.uint8)
            )
        splits += [images, torch.from_numpy(labels)]
    return ImageDataset("cifar10", CLASS_NAMES, *splits)
