"""Per-class image splits shared by every dataset loader."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where the configuration says; the message names the path and how to get them."""


class DatasetCorruptError(DatasetNotFoundError):
    """A dataset file is there but is not what its name says (random bytes, a crafted pickle, a wrong layout); the
    message names the file. A subclass of :class:`DatasetNotFoundError`, so every caller that reports a missing
    dataset as bad input (exit 2, before Ray starts) reports this too."""


@dataclass(frozen=True)
class ImageDataset:
    """A labelled image dataset with a training and a held-out split, kept as uint8 tensors.

    Attributes:
        name: Registry name of the dataset.
        class_names: Name of every class; a label is an index into this tuple.
        train_images: ``(N, 3, H, W)`` uint8 images of the training split.
        train_labels: ``(N,)`` int64 labels of the training split.
        test_images: ``(M, 3, H, W)`` uint8 images of the held-out split.
        test_labels: ``(M,)`` int64 labels of the held-out split.
        n_resized: How many of the source's image files (both splits, before any cap) were not ``image_size`` ×
            ``image_size`` and were resized to it; counted by loaders of files of any size (``image_folder``),
            0 for the others.
    """

    name: str
    class_names: tuple[str, ...]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    n_resized: int = 0

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
                raise ValueError(f"{split}_images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
            if len(images) != len(labels):
                raise ValueError(f"{split}: {len(images)} images but {len(labels)} labels")

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[-1])

    def class_index(self, name: str) -> int:
        """Label of the class called ``name``; ``ValueError`` listing the valid names otherwise."""
        try:
            return self.class_names.index(str(name))
        except ValueError:
            raise ValueError(
                f"class {name!r} is not in dataset {self.name!r}; valid classes: {', '.join(self.class_names)}"
            ) from None

    def images_of(self, class_name: str, split: str) -> torch.Tensor:
        """All images of one class in ``split`` (``"train"`` or ``"test"``), in dataset order."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        label = self.class_index(class_name)
        images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
        return images[labels == label]

    def class_sizes(self, split: str) -> dict[str, int]:
        """Number of images per class in ``split``."""
        labels = getattr(self, f"{split}_labels")
        counts = torch.bincount(labels, minlength=len(self.class_names))
        return {name: int(counts[i]) for i, name in enumerate(self.class_names)}

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the training split in [0, 1] units (for input normalisation)."""
        x = self.train_images.double() / 255.0
        mean = x.mean(dim=(0, 2, 3))
        std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
        return tuple(float(v) for v in mean), tuple(float(v) for v in std)

    def subset(
        self, *, max_train_per_class: int | None = None, max_test_per_class: int | None = None, seed: int = 0
    ) -> ImageDataset:
        """Keep at most ``max_*_per_class`` images of every class, drawn without replacement with ``seed``."""
        gen = np.random.default_rng(seed)

        def cap(images: torch.Tensor, labels: torch.Tensor, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
            if limit is None:
                return images, labels
            keep = []
            for label in range(len(self.class_names)):
                idx = np.flatnonzero(labels.numpy() == label)
                if len(idx) > limit:
                    idx = np.sort(gen.choice(idx, size=limit, replace=False))
                keep.append(idx)
            order = np.sort(np.concatenate(keep))
            return images[order], labels[order]

        train = cap(self.train_images, self.train_labels, max_train_per_class)
        test = cap(self.test_images, self.test_labels, max_test_per_class)
        return dataclasses.replace(
            self, train_images=train[0], train_labels=train[1], test_images=test[0], test_labels=test[1]
        )


@dataclass(frozen=True)
class DatasetEntry:
    """A registry entry: how to load a dataset and what it holds, known without loading it.

    Attributes:
        load: ``load(root, image_size, download) -> ImageDataset``; raises ``DatasetNotFoundError`` when the
            files are missing.
        class_names: The dataset's classes in label order.
        needs_root: Whether ``dataset.root`` must be set.
        native_size: The images' own side length (the model input size unless the config says otherwise);
            ``None`` where only the files know it (``image_folder``).
        require: ``require(root)`` raises ``DatasetNotFoundError`` when the files are not under ``root``, without
            reading them (a cheap presence check, run before class names are checked); ``None`` for generated data.
        list_classes: ``list_classes(root)``, the classes of a dataset whose classes are its folders
            (``image_folder``): a listing, no decoding; raises ``DatasetNotFoundError`` as ``require`` does.
            ``None`` where ``class_names`` says it (it is then empty here). :meth:`classes` asks the right one.
        load_options: ``DatasetConfig`` fields passed to ``load`` as keyword arguments (``image_folder``:
            ``cache_dir``, ``decode_workers``).
    """

    load: Callable[..., ImageDataset]
    class_names: Sequence[str]
    needs_root: bool
    native_size: int | None
    require: Callable[[str | None], None] | None = None
    list_classes: Callable[[str | None], Sequence[str]] | None = None
    load_options: tuple[str, ...] = ()

    def classes(self, root: str | None) -> list[str]:
        """The dataset's classes in label order: ``list_classes(root)`` where the root decides them, else
        ``class_names``."""
        return list(self.list_classes(root) if self.list_classes is not None else self.class_names)
