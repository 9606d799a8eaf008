"""SVHN and MNIST loaders on tiny files written in their formats; Gaussian-noise anomaly images."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
from scipy.io import savemat

from experiments.data import DATASETS, DatasetNotFoundError
from experiments.data.noise import gaussian_noise_images, synthetic_outlier_images


def test_svhn_from_mat_files(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 7)):
        X = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).reshape(-1, 1)  # SVHN stores digit 0 as label 10
        savemat(tmp_path / f"{split}_32x32.mat", {"X": X, "y": y})
    data = DATASETS["svhn"].load(str(tmp_path), 32, False)
    assert data.train_images.shape == (12, 3, 32, 32) and data.test_images.shape == (7, 3, 32, 32)
    assert data.train_labels.tolist() == [(i % 10 + 1) % 10 for i in range(12)]
    raw = np.asarray(__import__("scipy.io").io.loadmat(tmp_path / "train_32x32.mat")["X"])
    assert torch.equal(data.train_images[3], torch.from_numpy(raw[..., 3]).permute(2, 0, 1))


def _idx(path, array):
    dims = array.shape
    magic = 0x0800 + len(dims)
    with open(path, "wb") as fh:
        fh.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + array.tobytes())


def test_mnist_from_idx_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for prefix, n in (("train", 9), ("t10k", 4)):
        _idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        _idx(raw / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    data = DATASETS["mnist"].load(str(tmp_path), 32, False)
    assert data.train_images.shape == (9, 3, 32, 32) and data.test_labels.tolist() == [0, 1, 2, 3]
    native = DATASETS["mnist"].load(str(tmp_path), 28, False)
    assert torch.equal(native.train_images[0, 0], native.train_images[0, 2])


@pytest.mark.parametrize("name, needle", [("svhn", "train_32x32.mat"), ("mnist", "MNIST/raw")])
def test_missing_roots_name_the_expected_path(tmp_path, name, needle):
    with pytest.raises(DatasetNotFoundError, match=needle) as info:
        DATASETS[name].load(str(tmp_path / "nowhere"), 32, False)
    assert str(tmp_path / "nowhere") in str(info.value)


def test_gaussian_noise_images_are_deterministic_with_the_asked_statistics():
    a = gaussian_noise_images(200, 16, seed=3, mean=0.4, std=0.1)
    assert a.dtype == torch.uint8 and a.shape == (200, 3, 16, 16)
    assert torch.equal(a, gaussian_noise_images(200, 16, seed=3, mean=0.4, std=0.1))
    x = a.double() / 255
    assert abs(x.mean().item() - 0.4) < 0.01 and abs(x.std().item() - 0.1) < 0.01


def test_synthetic_outliers_are_the_four_documented_kinds():
    images = torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8)
    out = synthetic_outlier_images(images, 10, seed=1, block=4)
    assert out.dtype == torch.uint8 and out.shape == (10, 3, 16, 16)
    assert torch.equal(out, synthetic_outlier_images(images, 10, seed=1, block=4))
    shuffled, inverted, blurred, constant = out[:3], out[3:6], out[6:8], out[8:]  # 10 = 3 + 3 + 2 + 2
    assert all(
        any(torch.equal(s[0].flatten().sort().values, x[0].flatten().sort().values) for x in images) for s in shuffled
    )
    assert all(any(torch.equal(255 - v, x) for x in images) for v in inverted)
    assert all(torch.equal(b[:, :4, :4], b[:, :1, :1].expand(3, 4, 4)) for b in blurred)
    assert constant[0].unique().tolist() == [0] and constant[1].unique().tolist() == [255]
    with pytest.raises(ValueError, match="block"):
        synthetic_outlier_images(images, 4, seed=0, block=5)
