"""Tests for experiments.models, experiments.train and experiments.embed.

Architecture sizes and losses are checked against hand-counted parameters and independent re-implementations of the
NT-Xent and Barlow Twins objectives; training on ~40 tiny digit images checks results, callbacks, determinism,
exact resume after a simulated fault and divergence handling.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from experiments.augment import make_augmentation, ssl_view_transform
from experiments.data import load_digits
from experiments.embed import embed_images
from experiments.models import (
    BACKBONES,
    MODEL_FAMILIES,
    MODELS,
    TRAIN_DEFAULTS,
    BarlowTwins,
    SimCLR,
    build_model,
    resnet20,
)
from experiments.models.resnet import CifarResNet, PaddingShortcut
from experiments.train import (
    EpochResult,
    TrainingDivergedError,
    TrainSettings,
    TrainState,
    make_optimizer,
    train,
)

SIZE = 16  # image side used for training tests: ResNet-20 pools globally, so any side >= 4 works
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@pytest.fixture(scope="module")
def digits16():
    ds = load_digits(image_size=SIZE).subset(max_train_per_class=4, max_test_per_class=3)
    return ds


def fresh_model(name: str = "simclr", init_seed: int = 123, **kwargs) -> torch.nn.Module:
    torch.manual_seed(init_seed)
    return build_model(name, MEAN, STD, **kwargs)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------------------------------- ResNet


def cifar_resnet_param_count(n: int) -> int:
    """He et al.'s CIFAR ResNet-(6n+2) with option-A shortcuts, counted by hand: 3x3 convs without bias, a BatchNorm
    (weight + bias) after each conv, no classifier."""
    conv = lambda cin, cout: 9 * cin * cout  # noqa: E731
    bn = lambda c: 2 * c  # noqa: E731
    block = lambda cin, cout: conv(cin, cout) + bn(cout) + conv(cout, cout) + bn(cout)  # noqa: E731
    total = conv(3, 16) + bn(16)
    for cin, cout in ((16, 16), (16, 32), (32, 64)):
        total += block(cin, cout) + (n - 1) * block(cout, cout)
    return total


def test_resnet20_parameter_count() -> None:
    # the classic ResNet-20 has 269 722 parameters with its 64 -> 10 classifier (650 of them)
    assert cifar_resnet_param_count(3) == 269_722 - 650 == 269_072
    net = resnet20()
    assert n_params(net) == 269_072
    assert n_params(CifarResNet(5)) == cifar_resnet_param_count(5)  # ResNet-32
    assert BACKBONES["resnet20"] is resnet20


def test_resnet20_stage_shapes_and_output() -> None:
    net = resnet20().eval()
    shapes = {}
    for name in ("stem", "layer1", "layer2", "layer3"):
        getattr(net, name).register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, o.shape))
    out = net(torch.rand(2, 3, 32, 32))
    assert shapes == {
        "stem": (2, 16, 32, 32),
        "layer1": (2, 16, 32, 32),
        "layer2": (2, 32, 16, 16),
        "layer3": (2, 64, 8, 8),
    }
    assert out.shape == (2, 64) and net.feature_dim == 64
    # 3 blocks per stage = 18 convs + the stem = 19 convs (+ the classifier makes 20 layers)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == 19
    # global average pooling: any input side works
    assert net(torch.rand(1, 3, SIZE, SIZE)).shape == (1, 64)
    with pytest.raises(ValueError, match="blocks_per_stage"):
        CifarResNet(0)


def test_padding_shortcut_is_strided_identity_with_zero_channels() -> None:
    x = torch.randn(2, 16, 8, 8)
    out = PaddingShortcut(16, 32, 2)(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, 0::2, 0::2])
    assert not out[:, :8].any() and not out[:, 24:].any()
    assert n_params(PaddingShortcut(16, 32, 2)) == 0


# ----------------------------------------------------------------------------------------------------- SSL models


def nt_xent_reference(z0: torch.Tensor, z1: torch.Tensor, t: float) -> float:
    """SimCLR's NT-Xent: for each of the 2N views, -log softmax of the positive pair's cosine / t against all other
    2N - 1 views, averaged over the 2N views."""
    z = F.normalize(torch.cat([z0, z1]).double(), dim=1)
    n = len(z0)
    sim = z @ z.T / t
    sim.fill_diagonal_(-math.inf)
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return float((torch.logsumexp(sim, dim=1) - sim[torch.arange(2 * n), positive]).mean())


def barlow_twins_reference(z0: torch.Tensor, z1: torch.Tensor, lam: float) -> float:
    """Barlow Twins: standardise each dimension over the batch, C = Za^T Zb / N, sum (1 - C_ii)^2 + lam sum C_ij^2."""

    def standardise(z):
        z = z.double()
        return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + 1e-5)

    c = standardise(z0).T @ standardise(z1) / len(z0)
    on = ((torch.diagonal(c) - 1) ** 2).sum()
    off = (c**2).sum() - (torch.diagonal(c) ** 2).sum()
    return float(on + lam * off)


@pytest.mark.parametrize(("name", "proj_dim"), [("simclr", 128), ("barlow_twins", 512)])
def test_ssl_model_loss_backward_and_embeddings(name: str, proj_dim: int) -> None:
    model = fresh_model(name)
    assert isinstance(model, {"simclr": SimCLR, "barlow_twins": BarlowTwins}[name])
    x0, x1 = torch.rand(6, 3, SIZE, SIZE), torch.rand(6, 3, SIZE, SIZE)
    loss = model.loss(x0, x1)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    model.eval()
    with torch.no_grad():
        assert model.embed(x0, "backbone").shape == (6, 64)
        assert model.embed(x0, "projection").shape == (6, proj_dim)
        assert torch.equal(model.embed(x0), model.embed(x0, "backbone"))
    with pytest.raises(ValueError, match="backbone"):
        model.embed(x0, "logits")


def test_simclr_loss_is_nt_xent() -> None:
    model = fresh_model("simclr", temperature=0.2).eval()
    x0, x1 = torch.rand(5, 3, SIZE, SIZE), torch.rand(5, 3, SIZE, SIZE)
    with torch.no_grad():
        got = model.loss(x0, x1).item()
        want = nt_xent_reference(model(x0), model(x1), 0.2)
    assert got == pytest.approx(want, rel=1e-4)


def test_barlow_twins_loss_matches_the_paper() -> None:
    model = fresh_model("barlow_twins", hidden_dim=32, output_dim=16, lambda_param=0.01).eval()
    x0, x1 = torch.rand(8, 3, SIZE, SIZE), torch.rand(8, 3, SIZE, SIZE)
    with torch.no_grad():
        z0, z1 = model(x0), model(x1)
        got = model.loss(x0, x1).item()
    assert z0.shape == (8, 16)
    assert got == pytest.approx(barlow_twins_reference(z0, z1, 0.01), rel=1e-4)


def test_features_normalise_the_input_first() -> None:
    model = build_model("simclr", (0.1, 0.2, 0.3), (0.5, 0.6, 0.7)).eval()
    x = torch.rand(3, 3, SIZE, SIZE)
    mean = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.5, 0.6, 0.7]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model.features(x), model.backbone((x - mean) / std), atol=1e-6)
    # the normalisation travels with the weights
    assert {"normalize.mean", "normalize.std"} <= set(model.state_dict())


def test_build_model_options_and_errors() -> None:
    assert {m for m, family in MODEL_FAMILIES.items() if family == "ssl"} >= {"simclr", "barlow_twins"}
    assert set(MODELS) == set(MODEL_FAMILIES) >= {"weak_metric_ae", "odm", "anomaly_clustering"}
    assert isinstance(fresh_model("simclr"), SimCLR) and isinstance(fresh_model("barlow_twins"), BarlowTwins)
    small = build_model("simclr", MEAN, STD, output_dim=32, hidden_dim=16)
    assert small(torch.rand(2, 3, SIZE, SIZE)).shape == (2, 32)
    with pytest.raises(ValueError) as err:
        build_model("no_such_model", MEAN, STD)
    assert "no_such_model" in str(err.value) and "simclr" in str(err.value) and "barlow_twins" in str(err.value)
    with pytest.raises(ValueError, match="resnet20"):
        build_model("simclr", MEAN, STD, backbone="resnet50")
    with pytest.raises(ValueError, match="temperature"):
        build_model("simclr", MEAN, STD, temperature=0.0)


def test_train_defaults_are_proj18s() -> None:
    s = TRAIN_DEFAULTS["simclr"]
    assert (s["optimizer"], s["lr"], s["momentum"], s["weight_decay"], s["schedule"]) == (
        "sgd",
        6e-3,
        0.9,
        5e-4,
        "cosine",
    )
    b = TRAIN_DEFAULTS["barlow_twins"]
    assert (b["optimizer"], b["lr"], b["momentum"]) == ("sgd", 0.06, 0.9)
    assert set(TRAIN_DEFAULTS) == set(MODELS)
    # the defaults are valid settings
    for _name, d in TRAIN_DEFAULTS.items():
        TrainSettings(batch_size=8, **d)


# ----------------------------------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": -1, "batch_size": 8}, "epochs"),
        ({"epochs": 1, "batch_size": 1}, "batch_size"),
        ({"epochs": 1, "batch_size": 8, "optimizer": "rmsprop"}, "optimizer"),
        ({"epochs": 1, "batch_size": 8, "schedule": "step"}, "schedule"),
        ({"epochs": 1, "batch_size": 8, "lr": 0.0}, "lr"),
        ({"epochs": 1, "batch_size": 8, "lr": -1.0}, "lr"),
        ({"epochs": 1, "batch_size": 8, "lr": float("nan")}, "lr"),
    ],
)
def test_train_settings_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainSettings(**kwargs)


def test_make_optimizer() -> None:
    model = torch.nn.Linear(3, 2)
    opt, sched = make_optimizer(
        model, TrainSettings(epochs=4, batch_size=2, lr=0.1, momentum=0.8, weight_decay=1e-3, schedule="cosine")
    )
    assert isinstance(opt, torch.optim.SGD)
    assert opt.param_groups[0]["momentum"] == 0.8 and opt.param_groups[0]["weight_decay"] == 1e-3
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    # cosine annealing over the 4 epochs: lr_e = lr / 2 (1 + cos(pi e / 4))
    assert lrs == pytest.approx([0.1 / 2 * (1 + math.cos(math.pi * e / 4)) for e in range(4)])
    opt, sched = make_optimizer(model, TrainSettings(epochs=4, batch_size=2, optimizer="adam", lr=1e-3))
    assert isinstance(opt, torch.optim.Adam) and sched is None


# ----------------------------------------------------------------------------------------------------- training


SETTINGS = TrainSettings(epochs=2, batch_size=8, lr=0.03, momentum=0.9, weight_decay=5e-4, schedule="cosine")


def view():
    return ssl_view_transform(SIZE)


def test_train_two_epochs_reports_each_epoch(digits16) -> None:
    images = digits16.train_images
    assert len(images) == 40
    model = fresh_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []

    def on_epoch(result, snapshot):
        state = snapshot()
        calls.append((result, state))

    results = train(model, images, SETTINGS, view(), seed=0, on_epoch=on_epoch)
    assert [r.epoch for r in results] == [1, 2]
    assert all(isinstance(r, EpochResult) for r in results)
    for r in results:
        assert math.isfinite(r.loss) and r.loss > 0
        assert r.images_per_second > 0 and r.seconds > 0
    # the epoch's lr is the cosine schedule's: 0.03 then 0.03 / 2 (1 + cos(pi / 2)) = 0.015
    assert [r.lr for r in results] == pytest.approx([0.03, 0.015])
    assert [c[0] for c in calls] == results
    for epoch, (_, state) in enumerate(calls, start=1):
        assert isinstance(state, TrainState) and state.epoch == epoch
        assert state.model.keys() == model.state_dict().keys()
        assert TrainState.from_dict(state.to_dict()) == state
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in calls[-1][1].model.items())
    assert not same_weights_dict(before, model.state_dict())  # it did learn something


def same_weights_dict(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_training_is_deterministic_in_seed(digits16) -> None:
    """The default views include lightly's random blur (numpy's global generator), so this also needs numpy seeded."""
    images = digits16.train_images
    a, b, c = fresh_model(), fresh_model(), fresh_model()
    np.random.seed(1)
    ra = train(a, images, SETTINGS, view(), seed=0)
    np.random.seed(2)  # global state left over from elsewhere must not matter
    rb = train(b, images, SETTINGS, view(), seed=0)
    train(c, images, SETTINGS, view(), seed=1)
    assert same_weights(a, b)
    assert [r.loss for r in ra] == [r.loss for r in rb]
    assert not same_weights(a, c)


class SimulatedFault(Exception):
    pass


@pytest.mark.parametrize("perturbation", ["none", "gaussian_noise"])
def test_resume_after_a_fault_equals_training_straight(digits16, perturbation: str) -> None:
    images = digits16.train_images
    perturb = None if perturbation == "none" else make_augmentation(perturbation, sigma=0.05)
    straight = fresh_model()
    in_memory: list[TrainState] = []
    train(
        straight, images, SETTINGS, view(), perturb=perturb, seed=3, on_epoch=lambda r, snap: in_memory.append(snap())
    )

    # a run that dies right after checkpointing epoch 1
    saved: list[TrainState] = []

    def checkpoint_then_crash(result, snapshot):
        saved.append(TrainState.from_dict(snapshot().to_dict()))
        raise SimulatedFault

    crashed = fresh_model()
    with pytest.raises(SimulatedFault):
        train(crashed, images, SETTINGS, view(), perturb=perturb, seed=3, on_epoch=checkpoint_then_crash)
    assert saved[0].epoch == 1

    # a fresh process: new model with another init, other global RNG state
    resumed = fresh_model(init_seed=999)
    torch.manual_seed(12345)
    np.random.seed(12345)
    results = train(resumed, images, SETTINGS, view(), perturb=perturb, seed=3, state=saved[0])
    assert [r.epoch for r in results] == [2]
    assert same_weights(straight, resumed)

    # a snapshot kept in memory while training went on is still the epoch-1 state
    again = fresh_model(init_seed=7)
    train(again, images, SETTINGS, view(), perturb=perturb, seed=3, state=in_memory[0])
    assert same_weights(straight, again)


def test_resume_from_the_last_epoch_does_nothing(digits16) -> None:
    images = digits16.train_images
    settings = TrainSettings(epochs=1, batch_size=8)
    model = fresh_model()
    states = []
    train(model, images, settings, view(), on_epoch=lambda r, snap: states.append(snap()))
    other = fresh_model(init_seed=5)
    assert train(other, images, settings, view(), state=states[0]) == []
    assert same_weights(model, other)


def test_barlow_twins_and_adam_train(digits16) -> None:
    images = digits16.train_images[:16]
    model = fresh_model("barlow_twins", hidden_dim=64, output_dim=32)
    results = train(model, images, TrainSettings(epochs=1, batch_size=8, optimizer="adam", lr=1e-3), view())
    assert len(results) == 1 and math.isfinite(results[0].loss)
    # batch size is clamped to the number of images
    results = train(fresh_model(), images[:5], TrainSettings(epochs=1, batch_size=64), view())
    assert len(results) == 1 and math.isfinite(results[0].loss)


def test_absurd_learning_rate_diverges_with_epoch_in_message(digits16) -> None:
    with pytest.raises(TrainingDivergedError) as err:
        train(fresh_model(), digits16.train_images, TrainSettings(epochs=2, batch_size=8, lr=1e30), view())
    assert "epoch 1" in str(err.value) and "learning rate" in str(err.value)


def test_nan_loss_model_diverges_at_the_first_step(digits16) -> None:
    # a zero input std makes the normalised input inf/NaN: the very first loss is NaN
    model = build_model("simclr", MEAN, (0.0, 0.0, 0.0))
    before = {k: v.clone() for k, v in model.named_parameters()}
    with pytest.raises(TrainingDivergedError, match=r"nan at epoch 1, step 0"):
        train(model, digits16.train_images, TrainSettings(epochs=1, batch_size=8), view())
    # the NaN step was not applied to the weights
    assert same_weights_dict(before, dict(model.named_parameters()))


def test_train_needs_two_images(digits16) -> None:
    with pytest.raises(ValueError, match="2 training images"):
        train(fresh_model(), digits16.train_images[:1], TrainSettings(epochs=1, batch_size=8), view())


# ----------------------------------------------------------------------------------------------------- embedding


def test_embed_images_shapes_norms_and_eval_mode(digits16) -> None:
    images = digits16.test_images  # 30 images
    model = fresh_model()
    z = embed_images(model, images)
    assert z.shape == (30, 64) and z.dtype == np.float32
    assert np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    assert not model.training
    raw = embed_images(model, images, l2_normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)
    # independent: the model's own backbone features of the [0, 1] images
    with torch.no_grad():
        want = model.features(images.float() / 255).numpy()
    assert np.allclose(raw, want, atol=1e-5)
    assert np.allclose(z, want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-5)
    # eval mode: deterministic and independent of the batching (BatchNorm uses running statistics)
    assert np.array_equal(embed_images(model, images), z)
    assert np.allclose(embed_images(model, images, batch_size=7), z, atol=1e-5)
    proj = embed_images(model, images, layer="projection")
    assert proj.shape == (30, 128)


def test_embed_images_applies_the_perturbation(digits16) -> None:
    images = digits16.test_images
    model = fresh_model()
    clean = embed_images(model, images)
    assert np.array_equal(embed_images(model, images, perturb=make_augmentation("none")), clean)
    noise = make_augmentation("gaussian_noise", sigma=0.2)

    def g(seed):
        gen = torch.Generator()
        gen.manual_seed(seed)
        return gen

    noisy = embed_images(model, images, perturb=noise, generator=g(0))
    assert noisy.shape == clean.shape
    assert np.abs(noisy - clean).max() > 1e-3
    assert np.array_equal(embed_images(model, images, perturb=noise, generator=g(0)), noisy)
    assert not np.array_equal(embed_images(model, images, perturb=noise, generator=g(1)), noisy)
    # a deterministic perturbation equals embedding the perturbed images directly
    blur = make_augmentation("gaussian_blur", sigma=1.0)
    with torch.no_grad():
        want = F.normalize(model.features(blur(images.float() / 255)), dim=1).numpy()
    assert np.allclose(embed_images(model, images, perturb=blur), want, atol=1e-5)


def test_embed_images_rejects_non_finite_embeddings(digits16) -> None:
    # a zero input std gives inf/NaN features, as a diverged model would
    broken = build_model("simclr", MEAN, (0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="NaN"):
        embed_images(broken, digits16.test_images)


def test_train_state_loads_with_weights_only(tmp_path):
    """Checkpoints are read with torch.load(weights_only=True): the state must hold no arbitrary objects."""
    import io

    data = load_digits(image_size=16).subset(max_train_per_class=12)
    model = build_model("simclr", *data.channel_stats())
    snaps = []
    train(
        model,
        data.images_of("3", "train"),
        TrainSettings(epochs=1, batch_size=6),
        ssl_view_transform(16),
        on_epoch=lambda r, snap: snaps.append(snap()),
    )
    buf = io.BytesIO()
    torch.save(snaps[0].to_dict(), buf)
    buf.seek(0)
    restored = TrainState.from_dict(torch.load(buf, map_location="cpu", weights_only=True))
    assert restored.epoch == 1 and set(restored.rng) >= {"torch", "numpy", "loader"}
