"""SVHN and MNIST from local roots in torchvision's formats.

- SVHN (cropped digits): ``<root>/train_32x32.mat`` and ``<root>/test_32x32.mat`` (read by
  ``torchvision.datasets.SVHN``; label 10 in the files is digit 0, which torchvision maps to 0).
- MNIST: ``<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (read by ``torchvision.datasets.MNIST``),
  28x28 grey images resized to the requested size and repeated on 3 channels.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from experiments.data.base import DatasetCorruptError, DatasetNotFoundError, ImageDataset

CLASS_NAMES = tuple(str(i) for i in range(10))

SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _resize(images: torch.Tensor, image_size: int) -> torch.Tensor:
    if images.shape[-1] == image_size:
        return images.contiguous()
    return (
        F.interpolate(images.float(), size=(image_size, image_size), mode="bilinear", align_corners=False)
        .round()
        .clamp(0, 255)
        .to(torch.uint8)
    )


def _check_arrays(path: str, what: str, data: np.ndarray, labels: np.ndarray, ndim: int) -> None:
    """Raise ``DatasetCorruptError`` naming ``path`` unless ``data`` is uint8 with ``ndim`` axes and ``labels`` are
    one integer in 0..9 per image."""
    ok = data.dtype == np.uint8 and data.ndim == ndim and labels.shape == (len(data),)
    ok = ok and np.issubdtype(labels.dtype, np.integer) and (not labels.size or 0 <= labels.min() <= labels.max() <= 9)
    if not ok:
        raise DatasetCorruptError(
            f"{path} is not {what} (got {data.dtype} images of shape {data.shape}, labels of shape {labels.shape})"
        )


def _root(name: str, root: str | None, what: str) -> str:
    if not root:
        raise DatasetNotFoundError(f"dataset {name!r} needs dataset.root ({what})")
    return os.path.expanduser(root)


def require_svhn(root: str | None) -> None:
    """Raise ``DatasetNotFoundError`` (naming the missing files and how to get them) unless ``train_32x32.mat`` and
    ``test_32x32.mat`` are in ``root``; reads no file."""
    root = _root("svhn", root, "the folder holding train_32x32.mat and test_32x32.mat")
    missing = [f for f in SVHN_FILES if not os.path.isfile(os.path.join(root, f))]
    if missing:
        raise DatasetNotFoundError(
            f"SVHN not found: expected {', '.join(os.path.join(root, f) for f in missing)}; get it with "
            f"`python -c \"import torchvision; torchvision.datasets.SVHN('{root}', split='train', download=True); "
            f"torchvision.datasets.SVHN('{root}', split='test', download=True)\"`"
        )


def require_mnist(root: str | None) -> None:
    """Raise ``DatasetNotFoundError`` (naming the missing files and how to get them) unless the four idx files are
    under ``<root>/MNIST/raw``; reads no file."""
    root = _root("mnist", root, "the folder holding MNIST/raw")
    raw = os.path.join(root, "MNIST", "raw")
    missing = [f for f in MNIST_FILES if not os.path.isfile(os.path.join(raw, f))]
    if missing:
        raise DatasetNotFoundError(
            f"MNIST not found: expected {', '.join(os.path.join(raw, f) for f in missing)}; get it with "
            f"`python -c \"import torchvision; torchvision.datasets.MNIST('{root}', download=True)\"`"
        )


def load_svhn(root: str | None, image_size: int = 32, download: bool = False) -> ImageDataset:
    """SVHN's 73 257 training and 26 032 test images (the ``extra`` split is not used).

    Raises:
        DatasetNotFoundError: ``train_32x32.mat`` / ``test_32x32.mat`` are not in ``root`` and ``download`` is off.
    """
    from torchvision.datasets import SVHN

    if download and root:
        for split in ("train", "test"):
            SVHN(os.path.expanduser(root), split=split, download=True)
    require_svhn(root)
    root = os.path.expanduser(root)

    class _LocalSVHN(SVHN):
        def _check_integrity(self) -> bool:  # "the file is there": accept trimmed or re-saved copies
            return os.path.isfile(os.path.join(self.root, self.filename))

    splits = []
    for split, filename in zip(("train", "test"), SVHN_FILES, strict=True):
        path = os.path.join(root, filename)
        try:  # scipy's loadmat: MATLAB v5 arrays only, no pickle; MATLAB objects come back as inert arrays
            ds = _LocalSVHN(root, split=split, download=False)
            data, labels = np.asarray(ds.data), np.asarray(ds.labels)
        except Exception as exc:
            raise DatasetCorruptError(f"{path} is not an SVHN .mat file ({type(exc).__name__}: {exc})") from None
        _check_arrays(path, "an SVHN .mat file", data, labels, ndim=4)
        splits += [_resize(torch.from_numpy(np.ascontiguousarray(data)), image_size), torch.from_numpy(labels)]
    return ImageDataset("svhn", CLASS_NAMES, *splits)


def load_mnist(root: str | None, image_size: int = 32, download: bool = False) -> ImageDataset:
    """MNIST's 60 000 training and 10 000 test images, resized to ``image_size`` on 3 channels.

    Raises:
        DatasetNotFoundError: the idx files are not under ``<root>/MNIST/raw`` and ``download`` is off.
    """
    from torchvision.datasets import MNIST

    if download and root:
        MNIST(os.path.expanduser(root), train=True, download=True)
    require_mnist(root)
    root = os.path.expanduser(root)
    splits = []
    for train in (True, False):
        path = os.path.join(root, "MNIST", "raw", MNIST_FILES[0 if train else 2])
        try:  # torchvision's idx reader: a header and raw bytes, no pickle (its legacy .pt cache: weights_only)
            ds = MNIST(root, train=train, download=False)
        except Exception as exc:
            raise DatasetCorruptError(
                f"{path} (or its labels file) is not an MNIST idx file ({type(exc).__name__})"
            ) from None
        _check_arrays(path, "an MNIST idx file", ds.data.numpy(), ds.targets.numpy(), ndim=3)
        images = ds.data.unsqueeze(1).repeat(1, 3, 1, 1)
        splits += [_resize(images, image_size), ds.targets.to(torch.int64)]
    return ImageDataset("mnist", CLASS_NAMES, *splits)
