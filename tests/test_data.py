"""Tests for experiments.data: the digits and CIFAR-10 loaders and the per-class split helpers.

Every expectation is recomputed independently: digits from scikit-learn's raw arrays (with a numpy bilinear
resampler), CIFAR-10 from batch files this module writes itself in the original pickle format.
"""

from __future__ import annotations

import os
import pickle
from collections import Counter

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sklearn_digits

from experiments.data import DATASETS, DatasetNotFoundError, ImageDataset, load_cifar10, load_digits

CIFAR_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


# ----------------------------------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    return load_digits()


@pytest.fixture(scope="module")
def raw_digits():
    bunch = sklearn_digits()
    return bunch.images, bunch.target


def bilinear_resize_numpy(img: np.ndarray, size: int) -> np.ndarray:
    """Separable linear interpolation with half-pixel centres and edge clamping (``align_corners=False``)."""
    n = img.shape[0]
    src = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
    rows = np.stack([np.interp(src, np.arange(n), r) for r in img])  # (n, size)
    return np.stack([np.interp(src, np.arange(n), c) for c in rows.T]).T  # (size, size)


def test_digits_shapes_dtype_and_classes(digits: ImageDataset) -> None:
    assert digits.name == "digits"
    assert digits.class_names == tuple(str(i) for i in range(10))
    for images, labels in ((digits.train_images, digits.train_labels), (digits.test_images, digits.test_labels)):
        assert images.dtype == torch.uint8
        assert images.ndim == 4 and images.shape[1:] == (3, 32, 32)
        assert labels.dtype == torch.int64
        assert len(images) == len(labels)
        assert set(labels.tolist()) == set(range(10))
        # grey images: the three channels are copies
        assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])
    assert len(digits.train_images) + len(digits.test_images) == 1797
    assert digits.image_size == 32
    assert DATASETS["digits"].load is load_digits and not DATASETS["digits"].needs_root


def test_digits_split_is_a_stratified_partition(raw_digits) -> None:
    raw_images, raw_labels = raw_digits
    ds = load_digits(image_size=8)
    # at the native size the pixels are the raw 0..16 values rescaled to 0..255
    expected = np.round(raw_images / 16.0 * 255).astype(np.uint8)
    original = Counter((img.tobytes(), int(y)) for img, y in zip(expected, raw_labels, strict=False))
    train = Counter(
        (img[0].numpy().tobytes(), int(y)) for img, y in zip(ds.train_images, ds.train_labels, strict=False)
    )
    test = Counter((img[0].numpy().tobytes(), int(y)) for img, y in zip(ds.test_images, ds.test_labels, strict=False))
    # train + test is exactly the original multiset of (image, label): nothing lost, no image in both splits
    # (an image can only appear in both if the data set holds it twice)
    assert train + test == original
    assert all(train[key] + test[key] <= original[key] for key in train.keys() & test.keys())
    # stratified: every class has ~30 % of its images held out
    raw_counts = np.bincount(raw_labels, minlength=10)
    test_counts = np.bincount(ds.test_labels.numpy(), minlength=10)
    assert np.all(np.abs(test_counts - 0.3 * raw_counts) <= 1.0), (test_counts, raw_counts)
    assert ds.class_sizes("test") == {str(c): int(test_counts[c]) for c in range(10)}
    assert ds.class_sizes("train") == {str(c): int(raw_counts[c] - test_counts[c]) for c in range(10)}


def test_digits_test_fraction_and_its_validation() -> None:
    ds = load_digits(image_size=8, test_fraction=0.5)
    assert abs(len(ds.test_images) - 1797 * 0.5) <= 10
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="test_fraction"):
            load_digits(test_fraction=bad)


def test_digits_upsampling_matches_numpy_bilinear(raw_digits) -> None:
    raw_images, raw_labels = raw_digits
    ds = load_digits(image_size=16)
    assert ds.train_images.shape[1:] == (3, 16, 16) and ds.image_size == 16
    # identify a few training images by their 8x8 originals through the native-size split (same split_seed)
    native = load_digits(image_size=8)
    assert torch.equal(native.train_labels, ds.train_labels)
    lookup = {np.round(img / 16.0 * 255).astype(np.uint8).tobytes(): i for i, img in enumerate(raw_images)}
    for k in range(0, len(native.train_images), 97):
        i = lookup[native.train_images[k, 0].numpy().tobytes()]
        want = np.clip(np.round(bilinear_resize_numpy(raw_images[i] / 16.0, 16) * 255), 0, 255)
        got = ds.train_images[k, 0].numpy().astype(np.int64)
        assert np.abs(got - want).max() <= 1  # float32 vs float64 rounding at .5
        assert int(raw_labels[i]) == int(ds.train_labels[k])


def test_digits_split_is_deterministic_in_split_seed() -> None:
    a, b, c = load_digits(image_size=8), load_digits(image_size=8), load_digits(image_size=8, split_seed=1)
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    assert not torch.equal(a.test_images, c.test_images)
    assert a.class_sizes("test") == c.class_sizes("test")  # stratification does not depend on the seed


def test_images_of_class_index_and_class_sizes(digits: ImageDataset) -> None:
    for split in ("train", "test"):
        labels = getattr(digits, f"{split}_labels")
        images = getattr(digits, f"{split}_images")
        sizes = digits.class_sizes(split)
        assert sum(sizes.values()) == len(labels)
        for name in digits.class_names:
            sel = digits.images_of(name, split)
            idx = torch.nonzero(labels == int(name)).flatten()
            assert torch.equal(sel, images[idx])
            assert len(sel) == sizes[name]
    assert digits.class_index("7") == 7
    with pytest.raises(ValueError) as err:
        digits.class_index("cat")
    assert "'cat'" in str(err.value) and "0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in str(err.value)
    with pytest.raises(ValueError, match="valid classes"):
        digits.images_of("eleven", "train")
    with pytest.raises(ValueError, match="split"):
        digits.images_of("3", "validation")


def test_subset_caps_every_class(digits: ImageDataset) -> None:
    small = digits.subset(max_train_per_class=5, seed=0)
    assert set(small.class_sizes("train").values()) == {5}
    assert torch.equal(small.test_images, digits.test_images)  # no cap on test
    # every kept image is a row of the original split with the same label, in the original order
    rows = {(img.numpy().tobytes(), int(y)) for img, y in zip(digits.train_images, digits.train_labels, strict=False)}
    assert all(
        (img.numpy().tobytes(), int(y)) in rows for img, y in zip(small.train_images, small.train_labels, strict=False)
    )
    assert small.class_names == digits.class_names and small.name == digits.name
    # deterministic in the seed, different for another seed
    again = digits.subset(max_train_per_class=5, seed=0)
    other = digits.subset(max_train_per_class=5, seed=1)
    assert torch.equal(small.train_images, again.train_images)
    assert not torch.equal(small.train_images, other.train_images)
    # both caps; a cap above the class size keeps everything
    both = digits.subset(max_train_per_class=3, max_test_per_class=2)
    assert set(both.class_sizes("train").values()) == {3} and set(both.class_sizes("test").values()) == {2}
    same = digits.subset(max_test_per_class=10_000)
    assert torch.equal(same.test_images, digits.test_images) and torch.equal(same.train_labels, digits.train_labels)


def test_image_dataset_validates_its_tensors() -> None:
    ok = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    labels = torch.zeros(2, dtype=torch.int64)
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset("x", ("a",), ok.float(), labels, ok, labels)
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset("x", ("a",), ok, labels, ok[:, :1], labels)
    with pytest.raises(ValueError, match="labels"):
        ImageDataset("x", ("a",), ok, labels[:1], ok, labels)


def test_channel_stats(digits: ImageDataset) -> None:
    mean, std = digits.channel_stats()
    x = digits.train_images[:, 0].double().numpy() / 255.0
    assert mean == pytest.approx((x.mean(),) * 3, rel=1e-9)
    assert std == pytest.approx((x.std(ddof=1),) * 3, rel=1e-9)


# ----------------------------------------------------------------------------------------------------- CIFAR-10


def write_fake_cifar(root, per_class_per_batch: int = 1, test_per_class: int = 2, seed: int = 0):
    """A miniature CIFAR-10 in the original format: Python pickles with ``data`` (uint8 N x 3072, rows are the R,
    then G, then B plane of a 32x32 image, each row-major) and ``labels``; ``batches.meta`` with ``label_names``.

    The keys are ``str``, as the original Python-2 pickles read back under ``encoding="latin1"``.
    Returns ``(train_data, train_labels, test_data, test_labels)`` as written, batches concatenated in order.
    """
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder)

    def batch(n_per_class: int):
        labels = np.repeat(np.arange(10), n_per_class)
        rng.shuffle(labels)
        data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
        return data, [int(v) for v in labels]

    train_data, train_labels = [], []
    for b in range(1, 6):
        data, labels = batch(per_class_per_batch)
        if b == 1:  # one image with a known colour per plane, to pin the channel order
            data[0, :1024], data[0, 1024:2048], data[0, 2048:] = 200, 100, 50
        with open(os.path.join(folder, f"data_batch_{b}"), "wb") as f:
            pickle.dump(
                {
                    "batch_label": f"training batch {b} of 5",
                    "labels": labels,
                    "data": data,
                    "filenames": [f"img{i}.png" for i in range(len(labels))],
                },
                f,
            )
        train_data.append(data)
        train_labels += labels
    test_data, test_labels = batch(test_per_class)
    with open(os.path.join(folder, "test_batch"), "wb") as f:
        pickle.dump({"batch_label": "testing batch 1 of 1", "labels": test_labels, "data": test_data}, f)
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump(
            {"num_cases_per_batch": 10 * per_class_per_batch, "label_names": list(CIFAR_NAMES), "num_vis": 3072}, f
        )
    return np.concatenate(train_data), train_labels, test_data, test_labels


def test_cifar10_round_trips_pixels_labels_and_channel_order(tmp_path) -> None:
    train_data, train_labels, test_data, test_labels = write_fake_cifar(tmp_path, per_class_per_batch=2)
    ds = load_cifar10(str(tmp_path))
    assert ds.name == "cifar10" and ds.class_names == CIFAR_NAMES
    assert ds.train_images.shape == (100, 3, 32, 32) and ds.test_images.shape == (20, 3, 32, 32)
    assert ds.train_images.dtype == torch.uint8 and ds.train_labels.dtype == torch.int64
    assert ds.train_labels.tolist() == train_labels and ds.test_labels.tolist() == test_labels
    # channel order: plane 0 is red, 1 green, 2 blue
    first = ds.train_images[0]
    assert (first[0] == 200).all() and (first[1] == 100).all() and (first[2] == 50).all()
    # every pixel: image[c, y, x] == row[c * 1024 + y * 32 + x]
    for k in (1, 37, 99):
        row = train_data[k]
        for c, y, x in ((0, 0, 0), (1, 5, 31), (2, 31, 7), (0, 17, 3)):
            assert int(ds.train_images[k, c, y, x]) == int(row[c * 1024 + y * 32 + x])
    assert np.array_equal(ds.train_images.reshape(100, -1).numpy(), train_data)
    assert np.array_equal(ds.test_images.reshape(20, -1).numpy(), test_data)
    assert ds.class_sizes("train") == {name: 10 for name in CIFAR_NAMES}
    assert ds.class_sizes("test") == {name: 2 for name in CIFAR_NAMES}
    assert ds.images_of("cat", "test").shape == (2, 3, 32, 32)
    assert DATASETS["cifar10"].needs_root and tuple(DATASETS["cifar10"].class_names) == CIFAR_NAMES


def test_cifar10_resizes_to_image_size(tmp_path) -> None:
    _train_data, _, test_data, _ = write_fake_cifar(tmp_path)
    ds = load_cifar10(str(tmp_path), image_size=16)
    assert ds.train_images.shape == (50, 3, 16, 16) and ds.test_images.shape == (20, 3, 16, 16)
    assert ds.train_images.dtype == torch.uint8 and ds.image_size == 16
    # halving with bilinear (align_corners=False, no antialias) samples at 2i + 0.5: the mean of each 2x2 block
    full = test_data.reshape(-1, 3, 16, 2, 16, 2).astype(np.float64)
    want = np.round(full.mean(axis=(3, 5)))
    assert np.array_equal(ds.test_images.numpy(), want.astype(np.uint8))


def test_cifar10_missing_root_names_the_expected_folder(tmp_path) -> None:
    with pytest.raises(DatasetNotFoundError) as err:
        load_cifar10(str(tmp_path / "nowhere"))
    assert os.path.join(str(tmp_path / "nowhere"), "cifar-10-batches-py") in str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    for root in (None, ""):
        with pytest.raises(DatasetNotFoundError, match="root"):
            load_cifar10(root)


def test_cifar10_incomplete_folder_is_not_found(tmp_path) -> None:
    write_fake_cifar(tmp_path)
    os.remove(tmp_path / "cifar-10-batches-py" / "data_batch_4")
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py"):
        load_cifar10(str(tmp_path))


def test_cifar10_loads_without_batches_meta(tmp_path) -> None:
    """Only the batch files are required; the class names are CIFAR-10's own."""
    _, train_labels, _, _ = write_fake_cifar(tmp_path)
    os.remove(tmp_path / "cifar-10-batches-py" / "batches.meta")
    ds = load_cifar10(str(tmp_path))
    assert ds.class_names == CIFAR_NAMES and ds.train_labels.tolist() == train_labels
