"""ODM (Masana et al., BMVC 2018): pair sampling, loss terms against numpy, mining, and a short training on digits.

The training test is the issue's "done when": on digits (in-distribution 0-4), the embedding trained WITH
out-of-distribution mining beats the one trained WITHOUT on the anomaly AUROC against Gaussian-noise images. The seen
OoD is :func:`synthetic_outlier_images` of the training images (pixel-shuffled, inverted, blurred digits and constant
grey images -- no Gaussian noise); the unseen Gaussian noise spans brightness and contrast (means 0.1-0.9, stds
0.05-0.3). Measured (VGG, 3 epochs, batch 64, 400 seen OoD images, seeds 0/1/2/3): noise AUROC 0.997 / 1.000 /
1.000 / 1.000 with mining, 0.889 / 0.965 / 0.985 / 0.969 without; novelty (test classes 5-9) AUROC 0.95-0.98
and nearest-class-mean accuracy 0.985-0.996 either way. Against a single N(0.5, 0.25) noise set both are at the
ceiling (0.98-1.00), as in the paper's own digit results.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from experiments.data import DATASETS
from experiments.data.noise import gaussian_noise_images, synthetic_outlier_images
from experiments.embed import embed_images
from experiments.metrics.detection import (
    detection_metrics,
    nc_accuracy,
    nearest_class_mean,
)
from experiments.models.odm import (
    ODM,
    ODM_DEFAULTS,
    contrastive_pair_loss,
    ood_pair_loss,
    sample_batch_pairs,
    sample_ood_pairs,
)
from experiments.train import TrainSettings
from experiments.train_labelled import train_labelled

MEAN, STD = (0.3,) * 3, (0.3,) * 3


def test_sample_pairs_all_and_random():
    y = torch.tensor([0, 0, 1, 2, 1])
    first, second, similar = sample_batch_pairs(y)
    assert sorted(zip(first.tolist(), second.tolist(), strict=False)) == [
        (i, j) for i in range(5) for j in range(i + 1, 5)
    ]
    assert similar.tolist() == [bool(y[i] == y[j]) for i, j in zip(first.tolist(), second.tolist(), strict=False)]
    torch.manual_seed(0)
    a = sample_batch_pairs(y, 50)
    torch.manual_seed(0)
    b = sample_batch_pairs(y, 50)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=False)) and len(a[0]) == 50
    assert bool((a[0] != a[1]).all()) and torch.equal(a[2], y[a[0]] == y[a[1]])
    o, i = sample_ood_pairs(3, 2)
    assert sorted(zip(o.tolist(), i.tolist(), strict=False)) == [(p, q) for p in range(2) for q in range(3)]
    o, i = sample_ood_pairs(3, 2, 7)
    assert len(o) == 7 and int(o.max()) < 2 and int(i.max()) < 3
    for call, needle in (
        (lambda: sample_batch_pairs(y[:1]), "at least 2"),
        (lambda: sample_batch_pairs(y, 0), "n_pairs"),
        (lambda: sample_ood_pairs(0, 2), "in- and out-of-distribution"),
    ):
        with pytest.raises(ValueError, match=needle):
            call()


def test_loss_of_given_pairs_equals_numpy():
    rng = np.random.default_rng(4)
    z, zo = rng.normal(size=(6, 3)) * 3, rng.normal(size=(4, 3)) * 3
    y = np.array([0, 0, 1, 1, 2, 2])
    first, second = np.array([0, 2, 4, 1, 3, 0]), np.array([1, 3, 5, 2, 0, 5])
    m = 5.0
    d = np.linalg.norm(z[first] - z[second], axis=1)
    sim = y[first] == y[second]
    expected = np.mean(d[sim] ** 2) + np.mean(np.maximum(0.0, m - d[~sim]) ** 2)

    def t(v):
        return torch.tensor(v, dtype=torch.float64)

    got = contrastive_pair_loss(t(z), torch.tensor(first), torch.tensor(second), torch.tensor(sim), m)
    assert got.item() == pytest.approx(expected)
    oi, ii = np.array([0, 1, 3, 3]), np.array([5, 0, 2, 4])
    expected_ood = np.mean(np.maximum(0.0, m - np.linalg.norm(zo[oi] - z[ii], axis=1)) ** 2)
    assert ood_pair_loss(t(z), t(zo), torch.tensor(oi), torch.tensor(ii), m).item() == pytest.approx(expected_ood)
    # only similar pairs: the push term is 0 (and the graph still backpropagates)
    zz = t(z).requires_grad_()
    only_sim = contrastive_pair_loss(zz, torch.tensor([0]), torch.tensor([1]), torch.tensor([True]), m)
    only_sim.backward()
    assert only_sim.item() == pytest.approx(np.sum((z[0] - z[1]) ** 2)) and zz.grad is not None


def test_mining_term_vanishes_beyond_the_margin_and_pulls_in_otherwise():
    z = torch.zeros(4, 2, dtype=torch.float64)
    far = torch.full((3, 2), 10.0, dtype=torch.float64)  # sqrt(200) > margin 10 from every in-distribution point
    o, i = sample_ood_pairs(4, 3)
    assert ood_pair_loss(z, far, o, i, 10.0).item() == 0.0
    near = far.clone().mul_(0.1).requires_grad_()
    loss = ood_pair_loss(z, near, o, i, 10.0)
    loss.backward()
    assert loss.item() > 0 and bool((near.grad < 0).all())  # gradient descent moves the OoD points away


def test_model_options_parts_and_embedding():
    x, y = torch.rand(6, 3, 32, 32), torch.tensor([0, 0, 1, 1, 2, 2])
    torch.manual_seed(0)
    model = ODM(MEAN, STD, embed_dim=8, n_pairs=10)
    assert model.uses_ood and not ODM(MEAN, STD, mining=False).uses_ood
    total, parts = model.loss(x, y, torch.rand(6, 3, 32, 32))
    assert set(parts) == {"in", "ood"} and total.item() == pytest.approx(sum(p.item() for p in parts.values()))
    _, parts = ODM(MEAN, STD, mining=False).loss(x, y, None)
    assert set(parts) == {"in"}
    model.eval()
    assert model.embed(x).shape == (6, 8) and torch.equal(model.embed(x, "projection"), model.embed(x))
    res = ODM(MEAN, STD, backbone="resnet20", embed_dim=5).eval()
    assert res.embed(x).shape == (6, 5)
    with pytest.raises(ValueError, match="embed layer"):
        model.embed(x, "decoder")
    for bad, needle in (
        ({"backbone": "vit"}, "backbone"),
        ({"embed_dim": 0}, "embed_dim"),
        ({"margin": 0.0}, "margin"),
        ({"n_pairs": 0}, "n_pairs"),
        ({"dropout": 1.0}, "dropout"),
    ):
        with pytest.raises(ValueError, match=needle):
            ODM(MEAN, STD, **bad)
    assert ODM_DEFAULTS["optimizer"] == "adam" and TrainSettings(**ODM_DEFAULTS, batch_size=64).epochs > 0


def _noise_grid(size: int) -> torch.Tensor:
    """Gaussian-noise images of varied brightness and contrast: 20 per (mean, std), means 0.1..0.9, stds 0.05..0.3."""
    return torch.cat(
        [
            gaussian_noise_images(20, size, seed=100 + 7 * i + j, mean=m, std=s)
            for i, m in enumerate((0.1, 0.3, 0.5, 0.7, 0.9))
            for j, s in enumerate((0.05, 0.15, 0.3))
        ]
    )


@pytest.mark.slow
def test_mining_beats_no_mining_on_gaussian_noise():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    d = DATASETS["digits"].load(None, 32, False)
    keep, keep_test = d.train_labels < 5, d.test_labels < 5
    x, y, tx, ty = d.train_images[keep], d.train_labels[keep], d.test_images[keep_test], d.test_labels[keep_test]
    novel = d.test_images[~keep_test]
    seen = synthetic_outlier_images(x, 400, seed=123)
    noise = _noise_grid(32)
    mean, std = d.channel_stats()
    settings = TrainSettings(**{**ODM_DEFAULTS, "epochs": 3, "batch_size": 64})
    for seed in (0, 1):
        results = {}
        for mining in (True, False):
            torch.manual_seed(seed)
            model = ODM(mean, std, mining=mining)
            train_labelled(model, x, y, settings, ood_images=seen, seed=seed)
            ref = embed_images(model, x, l2_normalize=False)
            s_in, pred = nearest_class_mean(ref, y.numpy(), embed_images(model, tx, l2_normalize=False))
            s_noise, _ = nearest_class_mean(ref, y.numpy(), embed_images(model, noise, l2_normalize=False))
            s_novel, _ = nearest_class_mean(ref, y.numpy(), embed_images(model, novel, l2_normalize=False))
            results[mining] = {
                "noise": detection_metrics(s_in, s_noise)["auroc"],
                "novelty": detection_metrics(s_in, s_novel)["auroc"],
                "nc_accuracy": nc_accuracy(pred, ty.numpy()),
            }
        assert results[True]["noise"] > results[False]["noise"] + 0.005, (seed, results)
        assert results[True]["noise"] > 0.99, (seed, results)
        for r in results.values():
            assert r["nc_accuracy"] > 0.9 and r["novelty"] > 0.85, (seed, results)  # chance: 0.2 and 0.5
