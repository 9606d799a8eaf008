"""The frozen family: a backbone that is not trained, from a local weights file or randomly initialised (tagged
``sweeper.random_init``), scored like every model; through a real tiny sweep its logged weights are the file's."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest
import torch
import torchvision
from conftest import tiny_config
from mlflow.tracking import MlflowClient

from experiments.models import MODELS, build_model
from experiments.models.family import TrainInputs
from experiments.train import TrainSettings
from sweeper.config import bundled_config

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A torchvision resnet18 state dict (random, seeded), saved as a pretrained-weights file would be."""
    torch.manual_seed(5)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def test_frozen_random_init_is_tagged_and_embeds_pooled_features() -> None:
    spec = MODELS["frozen"]
    torch.manual_seed(0)
    model = build_model("frozen", MEAN, STD, image_size=16)
    assert model.random_init and spec.family.tags(model) == {"sweeper.random_init": 1} and not spec.family.trains
    z = model.embed(torch.rand(4, 3, 16, 16))
    assert z.shape == (4, 512) and not any(p.requires_grad for p in model.parameters())
    assert not model.train().training  # batch-norm statistics stay frozen


def test_frozen_loads_the_file_and_fit_leaves_it_unchanged(resnet18_file) -> None:
    model = build_model("frozen", MEAN, STD, image_size=16, weights=str(resnet18_file))
    want = torch.load(resnet18_file, map_location="cpu", weights_only=True)
    assert not model.random_init and MODELS["frozen"].family.tags(model) == {"sweeper.random_init": 0}
    images = (torch.rand(8, 3, 16, 16) * 255).to(torch.uint8)
    MODELS["frozen"].family.fit(model, TrainInputs(images, torch.zeros(8), TrainSettings(epochs=3, batch_size=4)))
    got = model.backbone.state_dict()
    assert all(torch.equal(got[k], v) for k, v in want.items() if k in got) and len(got) == len(want) - 2  # no fc


def test_frozen_options_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown backbone"):
        build_model("frozen", MEAN, STD, backbone="resnet999")
    with pytest.raises(ValueError, match="normalize"):
        build_model("frozen", MEAN, STD, normalize="zca")
    with pytest.raises(FileNotFoundError):
        build_model("frozen", MEAN, STD, weights="/no/such/weights.pt")


def test_validating_a_frozen_model_with_referenced_weights_does_not_call_it_random(caplog) -> None:
    """``check_models`` builds a model whose weights are a ``trial:`` reference without them (to check its other
    options): no "randomly initialised" warning, which the same options without weights still give."""
    import logging

    from sweeper.config import load_config
    from sweeper.config.validate import check_models

    ref = "trial:model=simclr/train_class=0/augmentation=none/seed=0"
    for weights, warned in ((ref, False), (None, True)):
        options = {"backbone": "resnet20", **({"weights": weights} if weights else {})}
        cfg = load_config(bundled_config("demo"), ["grid.model=[frozen]", f"train.model_options.frozen={options}"])
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            check_models(cfg)
        assert ("randomly initialised" in caplog.text) is warned, caplog.text


@pytest.mark.slow
def test_a_frozen_trial_keeps_its_weights_and_is_scored(local_ray, tmp_path, resnet18_file) -> None:
    from sweeper.tune import run_sweep

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = tiny_config(
        tmp_path,
        name="frozen",
        experiment="frozen-exp",
        grid={"model": ["frozen"], "train_class": ["1"], "augmentation": ["none"], "seed": [0]},
        train={"epochs": 1, "batch_size": 16, "model_options": {"frozen": {"weights": str(resnet18_file)}}},
    )
    assert run_sweep(cfg, uri) == 0
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("frozen-exp")
    (run,) = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("sweeper.role") == "trial"]
    assert run.info.status == "FINISHED" and run.data.params["family"] == "frozen"
    assert run.data.tags["sweeper.random_init"] == "0"
    assert run.data.params["backbone_weights_sha256"] == hashlib.sha256(resnet18_file.read_bytes()).hexdigest()
    assert run.data.params["backbone_tensors_loaded"] == "120"  # resnet18's 122 state entries less fc
    rid = run.info.run_id
    logged = torch.load(
        client.download_artifacts(rid, "model/weights.pt", str(tmp_path)), map_location="cpu", weights_only=True
    )
    want = torch.load(resnet18_file, map_location="cpu", weights_only=True)
    assert all(torch.equal(logged[f"backbone.{k}"], v) for k, v in want.items() if not k.startswith("fc."))
    table = pd.read_parquet(client.download_artifacts(rid, "scores/scores.parquet", str(tmp_path)))
    assert set(table["metric"]) >= {"hausdorff", "euclidean", "mtopdiv", "knn_auroc"}
    assert set(table["eval_class"]) == {"0", "1", "2"} and table["mean"].notna().all()
