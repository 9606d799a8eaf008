"""Anomaly clustering: MVTec-layout loading, the synthetic set, patch features, α weights against brute force,
scores against scikit-learn, and the method end to end on the synthetic set."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import adjusted_rand_score, f1_score, normalized_mutual_info_score

from experiments.anomaly_clustering import (
    SYNTHETIC_CATEGORIES,
    PatchFeatureExtractor,
    anomaly_clustering,
    category_kind,
    clustering_scores,
    load_mvtec_category,
    make_synthetic_mvtec,
    patch_scores,
    patch_weights,
    weighted_embeddings,
)
from experiments.data import DatasetNotFoundError


def _png(path, array, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


def test_mvtec_layout_loader(tmp_path):
    rng = np.random.default_rng(0)
    base = tmp_path / "bottle"
    _png(base / "train/good/000.png", rng.integers(0, 255, (20, 20, 3), dtype=np.uint8))
    _png(base / "train/good/001.png", rng.integers(0, 255, (20, 20), dtype=np.uint8), "L")  # grey image
    _png(base / "test/good/000.png", rng.integers(0, 255, (20, 20, 3), dtype=np.uint8))
    for defect in ("crack", "broken"):
        for i in range(2):
            _png(base / f"test/{defect}/{i:03d}.png", rng.integers(0, 255, (20, 20, 3), dtype=np.uint8))
            mask = np.zeros((20, 20), np.uint8)
            mask[5:10, 5:10] = 255
            _png(base / f"ground_truth/{defect}/{i:03d}_mask.png", mask, "L")
    data = load_mvtec_category(tmp_path, "bottle", 16)
    assert data.train_images.shape == (2, 3, 16, 16) and data.test_images.shape == (4, 3, 16, 16)
    assert data.defect_types == ("broken", "crack") and data.test_labels.tolist() == [0, 0, 1, 1]
    assert set(np.unique(data.masks.numpy())) == {0, 1} and data.kind == "object"
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "carpet" / "train" / "good")):
        load_mvtec_category(tmp_path, "carpet", 16)
    assert category_kind("wood") == "texture" and category_kind("synthetic_texture") == "texture"


def test_synthetic_set_is_deterministic_and_reused(tmp_path):
    a = make_synthetic_mvtec(tmp_path / "a", n_train=3, n_test_per_defect=2, image_size=32)
    b = make_synthetic_mvtec(tmp_path / "b", n_train=3, n_test_per_defect=2, image_size=32)
    for cat in SYNTHETIC_CATEGORIES:
        x, y = load_mvtec_category(a, cat, 32), load_mvtec_category(b, cat, 32)
        assert torch.equal(x.test_images, y.test_images) and len(x.defect_types) == 3
        assert x.masks.sum() > 0
    stamp = (a / SYNTHETIC_CATEGORIES[0] / "train/good/000.png").stat().st_mtime_ns
    make_synthetic_mvtec(tmp_path / "a", n_train=3, n_test_per_defect=2, image_size=32)
    assert (a / SYNTHETIC_CATEGORIES[0] / "train/good/000.png").stat().st_mtime_ns == stamp


def test_scores_equal_sklearn_and_a_brute_force_f1():
    rng = np.random.default_rng(1)
    for _ in range(10):
        y, c = rng.integers(0, 3, 15), rng.integers(0, 3, 15)
        got = clustering_scores(y, c)
        assert got["nmi"] == pytest.approx(normalized_mutual_info_score(y, c))
        assert got["ari"] == pytest.approx(adjusted_rand_score(y, c))
        best = max(f1_score(y, np.array(perm)[c], average="micro") for perm in itertools.permutations(range(3)))
        assert got["f1_micro"] == pytest.approx(best)


def test_patch_weights_against_brute_force():
    rng = np.random.default_rng(2)
    test, train = rng.normal(size=(4, 5, 3)), rng.normal(size=(3, 5, 3))
    sup = patch_scores(test, supervision="supervised", train_feats=train)
    uns = patch_scores(test, supervision="unsupervised")
    for i in range(4):
        for p in range(5):
            bank = train.reshape(-1, 3)
            assert sup[i, p] == pytest.approx(np.min(np.linalg.norm(bank - test[i, p], axis=1)), rel=1e-5)
            others = np.concatenate([test[j] for j in range(4) if j != i])
            assert uns[i, p] == pytest.approx(np.min(np.linalg.norm(others - test[i, p], axis=1)), rel=1e-5)
    alpha = patch_weights(test, supervision="supervised", tau=0.5, train_feats=train)
    expected = np.exp(sup / 0.5) / np.exp(sup / 0.5).sum(axis=1, keepdims=True)
    assert np.allclose(alpha, expected) and np.allclose(alpha.sum(axis=1), 1)
    assert np.allclose(patch_weights(test, supervision="average", tau=1.0), 0.2)
    assert np.allclose(patch_weights(test, supervision="unsupervised", tau=1e6), 0.2, atol=1e-5)
    assert np.allclose(weighted_embeddings(test, alpha)[1], (alpha[1, :, None] * test[1]).sum(axis=0))
    with pytest.raises(ValueError, match="tau"):
        patch_weights(test, supervision="average", tau=0.0)
    with pytest.raises(ValueError, match="supervision"):
        patch_weights(test, supervision="semi", tau=1.0)


@pytest.mark.parametrize("backbone, grid", [("resnet18", (8, 8)), ("vit_tiny", (4, 4))])
def test_patch_features_shapes_and_weight_files(tmp_path, backbone, grid):
    torch.manual_seed(0)
    ex = PatchFeatureExtractor(backbone, pretrain_embed_dimension=16, target_embed_dimension=8, image_size=64)
    x = torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8)
    f = ex.extract(x)
    assert f.shape == (2, grid[0] * grid[1], 8) and ex.grid_shape == grid and ex.random_init
    torch.save({"state_dict": {f"module.{k}": v for k, v in ex.model.state_dict().items()}}, tmp_path / "w.pth")
    again = PatchFeatureExtractor(
        backbone, pretrain_embed_dimension=16, target_embed_dimension=8, image_size=64, weights=tmp_path / "w.pth"
    )
    assert not again.random_init and np.allclose(again.extract(x), f, atol=1e-5)
    with pytest.raises(FileNotFoundError, match=r"nowhere.pth"):
        PatchFeatureExtractor(backbone, weights=tmp_path / "nowhere.pth", image_size=64)
    with pytest.raises(ValueError, match="no layer"):
        PatchFeatureExtractor(backbone, layers=["layer9"], image_size=64)


def test_supervised_clustering_of_the_synthetic_set_is_well_above_chance(tmp_path):
    root = make_synthetic_mvtec(tmp_path)
    data = load_mvtec_category(root, "synthetic_texture", 64)
    torch.manual_seed(0)
    ex = PatchFeatureExtractor("resnet18", pretrain_embed_dimension=64, target_embed_dimension=64, image_size=64)
    result = anomaly_clustering(
        ex.extract(data.test_images),
        data.test_labels,
        supervision="supervised",
        tau=0.1,
        train_feats=ex.extract(data.train_images),
    )
    rng = np.random.default_rng(0)
    chance = np.mean(
        [normalized_mutual_info_score(data.test_labels, rng.permutation(data.test_labels)) for _ in range(50)]
    )
    assert result.scores["nmi"] > 0.5 > 3 * chance, (result.scores, chance)
    assert result.alpha.shape == (len(data.test_labels), 64)


def test_a_self_supervised_resnet20_from_the_sweep_is_a_patch_backbone(tmp_path):
    from experiments.models import build_model

    ssl = build_model("simclr", (0.5,) * 3, (0.25,) * 3)
    torch.save(ssl.state_dict(), tmp_path / "weights.pt")  # what an SSL trial logs as model/weights.pt
    ex = PatchFeatureExtractor(
        "resnet20",
        weights=tmp_path / "weights.pt",
        pretrain_embed_dimension=16,
        target_embed_dimension=16,
        image_size=32,
    )
    assert not ex.random_init
    assert all(
        torch.equal(a, b)
        for a, b in zip(ex.model.state_dict().values(), ssl.backbone.state_dict().values(), strict=True)
    )
    assert ex.extract(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == (2, 16 * 16, 16)
