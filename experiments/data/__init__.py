"""Dataset registry: ``DATASETS[name]`` describes how to load a dataset as per-class uint8 image tensors."""

from experiments.data.base import DatasetCorruptError, DatasetEntry, DatasetNotFoundError, ImageDataset
from experiments.data.cifar10 import CLASS_NAMES as CIFAR10_CLASSES
from experiments.data.cifar10 import load_cifar10, require_cifar10
from experiments.data.digits import CLASS_NAMES as DIGITS_CLASSES
from experiments.data.digits import load_digits
from experiments.data.image_folder import list_image_folder_classes, load_image_folder, require_image_folder
from experiments.data.svhn_mnist import CLASS_NAMES as DIGIT_CLASSES
from experiments.data.svhn_mnist import load_mnist, load_svhn, require_mnist, require_svhn
from experiments.data.textures import CLASS_NAMES as TEXTURE_CLASSES
from experiments.data.textures import load_textures

DATASETS: dict[str, DatasetEntry] = {
    "digits": DatasetEntry(load=load_digits, class_names=DIGITS_CLASSES, needs_root=False, native_size=8),
    "cifar10": DatasetEntry(
        load=load_cifar10, class_names=CIFAR10_CLASSES, needs_root=True, native_size=32, require=require_cifar10
    ),
    "svhn": DatasetEntry(
        load=load_svhn, class_names=DIGIT_CLASSES, needs_root=True, native_size=32, require=require_svhn
    ),
    "mnist": DatasetEntry(
        load=load_mnist, class_names=DIGIT_CLASSES, needs_root=True, native_size=28, require=require_mnist
    ),
    "textures": DatasetEntry(load=load_textures, class_names=TEXTURE_CLASSES, needs_root=False, native_size=64),
    "image_folder": DatasetEntry(
        load=load_image_folder,
        class_names=(),
        needs_root=True,
        native_size=None,
        require=require_image_folder,
        list_classes=list_image_folder_classes,
        load_options=("cache_dir", "decode_workers"),
    ),
}

__all__ = [
    "DATASETS",
    "DatasetCorruptError",
    "DatasetEntry",
    "DatasetNotFoundError",
    "ImageDataset",
    "load_cifar10",
    "load_digits",
    "load_image_folder",
    "load_mnist",
    "load_svhn",
]
