"""Checkpoints loaded exactly (:mod:`experiments.models.checkpoints`): files written here from the project's own
models with their keys renamed into each published layout (akamaster's CIFAR ResNet-20, torchvision, timm, a DINO
teacher, the sweep's SSL weights) load every tensor, compared one by one with the file's; a file lacking the stem is
refused (by the library, and by the CLI with exit 2, one line, before any MLflow store is made); an unexpected key
that is not a head's is refused; heads are dropped and named in the log; the logged hash is the file's SHA-256."""

from __future__ import annotations

import argparse
import hashlib
import logging

import pytest
import torch
import torchvision
import yaml

from experiments.anomaly_clustering import PatchFeatureExtractor
from experiments.models import build_model
from experiments.models.checkpoints import load_weights
from experiments.models.resnet import resnet20
from experiments.models.weak_metric import load_resnet20_backbone
from sweeper.cli import main
from sweeper.config import bundled_config, read_yaml
from sweeper.trial_params import checkpoint_params

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _randomised(net: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """``net``'s state with every float tensor (BN running statistics too) drawn at random, counters set to 7: a
    tensor left at its initial value cannot pass for a loaded one."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in net.state_dict().items():
        if v.is_floating_point():
            out[k] = torch.rand(v.shape, generator=gen) + (0.5 if k.endswith("running_var") else 0.0)
        else:
            out[k] = torch.full_like(v, 7)
    return out


def _akamaster(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ``resnet20`` state in akamaster/pytorch_resnet_cifar10's layout: ``DataParallel``'s ``module.``, the stem
    as ``conv1`` / ``bn1``, a ``linear`` classifier, no ``num_batches_tracked`` (saved before PyTorch 0.4.1)."""
    out = {}
    for k, v in state.items():
        if k.endswith("num_batches_tracked"):
            continue
        k = k.replace("stem.0.", "conv1.", 1) if k.startswith("stem.0.") else k
        k = k.replace("stem.1.", "bn1.", 1) if k.startswith("stem.1.") else k
        out[f"module.{k}"] = v
    out["module.linear.weight"], out["module.linear.bias"] = torch.randn(10, 64), torch.randn(10)
    return out


def _assert_every_tensor(model_state: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    """Every backbone tensor but the BN counters is in ``want`` (the file's, in the model's names) and equal."""
    required = {k for k in model_state if not k.endswith("num_batches_tracked")}
    assert required <= set(want), sorted(required - set(want))[:5]
    for k, v in want.items():
        assert torch.equal(model_state[k], v.to(model_state[k].dtype)), k


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """``(path, state)``: an akamaster-layout ResNet-20 checkpoint and the state it holds (in our names)."""
    state = _randomised(resnet20(), 1)
    path = tmp_path_factory.mktemp("akamaster") / "resnet20-12fca82f.th"
    torch.save({"state_dict": _akamaster(state), "best_prec1": 91.73}, path)
    return path, {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def test_akamaster_cifar_resnet20_loads_every_tensor_into_all_three_users(cifar, caplog):
    path, want = cifar
    caplog.set_level(logging.INFO, logger="experiments.models.checkpoints")
    frozen = build_model("frozen", MEAN, STD, backbone="resnet20", weights=str(path))
    _assert_every_tensor(frozen.backbone.state_dict(), want)
    assert torch.equal(frozen.backbone.stem[0].weight, want["stem.0.weight"])  # the stem that used to stay random
    weak_net, normalize, info = load_resnet20_backbone(path)
    _assert_every_tensor(weak_net.state_dict(), want)
    assert normalize is None and info.tensors_loaded == len(want) == 95  # 19 convs, 19 BNs of 4 tensors
    patches = PatchFeatureExtractor("resnet20", weights=path, pretrain_embed_dimension=8, target_embed_dimension=8)
    _assert_every_tensor(patches.model.state_dict(), want)
    assert not patches.random_init and patches.checkpoint.sha256 == frozen.checkpoint.sha256
    assert "linear (2)" in caplog.text and "conv1/bn1→stem" in caplog.text
    assert "19 BatchNorm num_batches_tracked counters absent from the file, kept at 0" in caplog.text


def test_a_checkpoint_without_the_stem_is_refused_in_one_line(cifar, tmp_path):
    path, _ = cifar
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    stemless = {k: v for k, v in state.items() if not k.startswith(("module.conv1.", "module.bn1."))}
    torch.save({"state_dict": stemless, "best_prec1": 91.0}, tmp_path / "stemless.th")
    with pytest.raises(
        ValueError, match=r"lack 5 of the 95 tensors of resnet20: stem\.0\.weight, stem\.1\.weight"
    ) as e:
        build_model("frozen", MEAN, STD, backbone="resnet20", weights=str(tmp_path / "stemless.th"))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="lack 5 of the 95"):
        load_resnet20_backbone(tmp_path / "stemless.th")


def test_an_unexpected_key_that_is_no_head_is_refused(cifar, tmp_path):
    path, _ = cifar
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    torch.save({**state, "module.layer4.0.conv1.weight": torch.zeros(3)}, tmp_path / "extra.th")
    with pytest.raises(ValueError, match=r"neither the backbone's nor a known head's: layer4\.0\.conv1\.weight"):
        build_model("frozen", MEAN, STD, backbone="resnet20", weights=str(tmp_path / "extra.th"))
    torch.save({**state, "module.conv1.weight": torch.zeros(16, 3, 5, 5)}, tmp_path / "shape.th")
    with pytest.raises(ValueError, match=r"wrong shape: stem\.0\.weight \(16, 3, 5, 5\) vs \(16, 3, 3, 3\)"):
        load_resnet20_backbone(tmp_path / "shape.th")


def test_torchvision_resnet18_loads_every_tensor_and_drops_fc(tmp_path, caplog):
    want = _randomised(torchvision.models.resnet18(weights=None), 2)
    torch.save(want, tmp_path / "resnet18.pth")
    caplog.set_level(logging.INFO, logger="experiments.models.checkpoints")
    model = build_model("frozen", MEAN, STD, weights=str(tmp_path / "resnet18.pth"))
    got = model.backbone.state_dict()
    _assert_every_tensor(got, {k: v for k, v in want.items() if not k.startswith("fc.")})
    assert model.checkpoint.tensors_loaded == len(want) - 2 and model.checkpoint.dropped == ("fc.weight", "fc.bias")
    assert int(got["bn1.num_batches_tracked"]) == 7  # loaded when the file has it
    assert "dropped head tensors: fc (2)" in caplog.text


def test_timm_vit_tiny_loads_every_tensor_and_resamples_pos_embed(tmp_path, caplog):
    import timm

    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10, img_size=32)
    want = _randomised(net, 3)
    torch.save(want, tmp_path / "vit_tiny.pth")
    caplog.set_level(logging.INFO, logger="experiments.models.checkpoints")
    model = build_model("frozen", MEAN, STD, backbone="vit_tiny", weights=str(tmp_path / "vit_tiny.pth"), image_size=32)
    _assert_every_tensor(model.backbone.state_dict(), {k: v for k, v in want.items() if not k.startswith("head.")})
    assert "head (2)" in caplog.text
    bigger = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=64).state_dict()
    torch.save(bigger, tmp_path / "vit_tiny_64.pth")
    again = build_model("frozen", MEAN, STD, backbone="vit_tiny", weights=str(tmp_path / "vit_tiny_64.pth"))
    assert again.backbone.pos_embed.shape == (1, 5, 192) and "pos_embed resampled" in caplog.text
    assert torch.equal(again.backbone.pos_embed[:, 0], bigger["pos_embed"][:, 0])  # the class token's position


def test_dino_teacher_wrapped_checkpoint_loads_the_teacher(tmp_path, caplog):
    import timm

    teacher = _randomised(timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32), 4)
    head = {"head.mlp.0.weight": torch.randn(8, 192), "head.last_layer.weight_g": torch.randn(16, 1)}
    checkpoint = {
        "teacher": {**{f"backbone.{k}": v for k, v in teacher.items()}, **head},
        "student": {f"module.backbone.{k}": v + 1 for k, v in teacher.items()},
        "epoch": 100,
        "args": argparse.Namespace(arch="vit_tiny", patch_size=16),  # DINO saves its arguments too
    }
    torch.save(checkpoint, tmp_path / "dino.pth")
    caplog.set_level(logging.INFO, logger="experiments.models.checkpoints")
    ex = PatchFeatureExtractor(
        "vit_tiny", weights=tmp_path / "dino.pth", image_size=32, pretrain_embed_dimension=8, target_embed_dimension=8
    )
    _assert_every_tensor(ex.model.state_dict(), teacher)
    assert ex.checkpoint.layout.startswith("teacher; backbone.") and "head (2)" in caplog.text


@pytest.mark.parametrize("ssl_model", ["simclr", "byol", "moco_v2"])
def test_the_sweeps_ssl_weights_load_with_their_normalisation(ssl_model, tmp_path, caplog):
    torch.manual_seed(0)
    ssl = build_model(ssl_model, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    ssl.backbone.load_state_dict(_randomised(ssl.backbone, 5))
    torch.save(ssl.state_dict(), tmp_path / "weights.pt")  # what an SSL trial logs as model/weights.pt
    caplog.set_level(logging.INFO, logger="experiments.models.checkpoints")
    info = load_weights(net := resnet20(), tmp_path / "weights.pt", name="resnet20")
    _assert_every_tensor(net.state_dict(), ssl.backbone.state_dict())
    assert torch.allclose(torch.tensor(info.normalization), torch.tensor([(0.1, 0.2, 0.3), (0.4, 0.5, 0.6)]))
    assert "projection_head (" in caplog.text and "normalize" not in {k.split(".")[0] for k in info.dropped}
    weak = build_model("weak_metric_ae", MEAN, STD, features="backbone", backbone_weights=str(tmp_path / "weights.pt"))
    assert torch.allclose(weak.normalize.mean.flatten(), torch.tensor([0.1, 0.2, 0.3]))
    _assert_every_tensor(weak.backbone.state_dict(), ssl.backbone.state_dict())


def test_sha256_and_params_are_the_files(cifar):
    path, _ = cifar
    model = build_model("frozen", MEAN, STD, backbone="resnet20", weights=str(path))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert checkpoint_params(model) == {"backbone_weights_sha256": sha, "backbone_tensors_loaded": 95}
    assert checkpoint_params(build_model("frozen", MEAN, STD, backbone="resnet20")) == {
        "backbone_weights_sha256": "none",
        "backbone_tensors_loaded": 0,
    }
    assert checkpoint_params(build_model("simclr", MEAN, STD)) == {}


def test_frozen_normalize_option():
    data = build_model("frozen", MEAN, STD, backbone="resnet20", normalize="data")
    assert torch.allclose(data.normalize.mean.flatten(), torch.tensor(MEAN))
    own = build_model("frozen", MEAN, STD, backbone="resnet20", normalize={"mean": [0.1, 0.2, 0.3], "std": [1, 2, 3]})
    assert torch.allclose(own.normalize.std.flatten(), torch.tensor([1.0, 2.0, 3.0]))
    for bad, needle in [
        ("zca", "normalize must be one of imagenet, data"),
        ({"mean": [0.1, 0.2, 0.3]}, "exactly the keys mean and std"),
        ({"mean": [0.1, 0.2], "std": [1, 1, 1]}, "list of 3 numbers"),
        ({"mean": [0, 0, 0], "std": [1, 0, 1]}, "std must be > 0"),
    ]:
        with pytest.raises(ValueError, match=needle):
            build_model("frozen", MEAN, STD, backbone="resnet20", normalize=bad)


def _cli_refuses(argv, tmp_path, monkeypatch, capsys, needle) -> None:
    """The CLI exits 2 with one ``sweeper: error:`` line holding ``needle``, and no MLflow store was created."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("sweeper: error:"), err
    assert needle in err, err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def _config(tmp_path, base: str, model: str, options: dict) -> str:
    raw = read_yaml(bundled_config(base))
    raw["grid"]["model"] = [model]
    raw["grid"].pop("params", None)
    raw["train"]["model_options"] = {model: options}
    path = tmp_path / f"{model}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.mark.parametrize("command", ["validate", "run"])
def test_the_cli_refuses_a_frozen_checkpoint_without_the_stem(command, cifar, tmp_path, monkeypatch, capsys):
    path, _ = cifar
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    torch.save({k: v for k, v in state.items() if not k.startswith("module.bn1.")}, tmp_path / "stemless.th")
    config = _config(tmp_path, "demo", "frozen", {"backbone": "resnet20", "weights": str(tmp_path / "stemless.th")})
    _cli_refuses([command, config], tmp_path, monkeypatch, capsys, "lack 4 of the 95 tensors of resnet20")


def test_the_cli_refuses_a_clustering_checkpoint_without_the_stem(cifar, tmp_path, monkeypatch, capsys):
    path, _ = cifar
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    torch.save({k: v for k, v in state.items() if not k.startswith("module.conv1.")}, tmp_path / "stemless.th")
    options = {"backbone": "resnet20", "weights": str(tmp_path / "stemless.th")}
    config = _config(tmp_path, "anomaly_clustering", "anomaly_clustering", options)
    _cli_refuses(["validate", config], tmp_path, monkeypatch, capsys, "lack 1 of the 95 tensors of resnet20")


def test_a_bad_normalize_is_refused_even_with_weights_from_a_run(tmp_path, monkeypatch, capsys):
    options = {"weights": "trial:model=simclr/train_class=0/augmentation=none/seed=0", "normalize": {"mean": [0]}}
    config = _config(tmp_path, "demo", "frozen", options)
    _cli_refuses(["validate", config], tmp_path, monkeypatch, capsys, "exactly the keys mean and std")
