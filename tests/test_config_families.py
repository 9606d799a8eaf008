"""Grid generalisations for the model families: class sets, model-option axes, training-setting axes, OoD data."""

from __future__ import annotations

import pytest
import torch

from sweeper.config import ConfigError, TrialSpec, bundled_config, load_config, parse_config, preflight


def raw(**grid):
    return {"name": "t", "experiment": "e", "grid": {"model": ["weak_metric_ae"], **grid}}


def test_train_classes_flat_list_is_one_set_and_nested_lists_are_an_axis():
    one = parse_config(raw(train_classes=[0, 1, 2]))
    assert [t.train_class for t in one.trials()] == ["0+1+2"]
    assert one.trials()[0].train_classes == ["0", "1", "2"]
    two = parse_config(raw(train_classes=[[0, 1], [2, 3, 4]]))
    assert [t.train_class for t in two.trials()] == ["0+1", "2+3+4"]


def test_params_are_a_product_axis_with_keys_and_round_trip():
    cfg = parse_config(
        raw(
            train_classes=[0, 1],
            params={"constraint": ["pairwise", "triplet"], "metric_weight": [0.1, 0.9], "batch_size": 32},
        )
    )
    trials = cfg.trials()
    assert len(trials) == 4 and len({t.key for t in trials}) == 4
    first = trials[0]
    assert first.key == (
        "model=weak_metric_ae/train_class=0+1/augmentation=none/batch_size=32/constraint=pairwise"
        "/metric_weight=0.1/seed=0"
    )
    assert TrialSpec.from_dict(first.to_dict()) == first
    # a param naming a training setting sets it; the others are model options
    assert cfg.settings_for(first).batch_size == 32
    assert cfg.model_options(first) == {"constraint": "pairwise", "metric_weight": 0.1}


def test_model_options_override_order_and_list_values():
    cfg = parse_config(
        {
            "name": "t",
            "experiment": "e",
            "grid": {"model": ["weak_metric_ae"], "train_classes": [0, 1], "params": {"latent_dim": [2, 8]}},
            "train": {"model_options": {"weak_metric_ae": {"latent_dim": 4, "margin": 2.0}}},
        }
    )
    assert [cfg.model_options(t) for t in cfg.trials()] == [
        {"latent_dim": 2, "margin": 2.0},
        {"latent_dim": 8, "margin": 2.0},
    ]


@pytest.mark.parametrize(
    "grid, extra, needle",
    [
        ({"train_classes": [0, 11]}, {}, "unknown train_class '11'"),
        ({"train_classes": [0, 0]}, {}, "lists a class twice"),
        ({"train_classes": [0, 1], "train_class": [3]}, {}, "not both"),
        ({"train_classes": [0, 1], "params": {"latent_dim": [0]}}, {}, "model 'weak_metric_ae' options latent_dim=0"),
        ({"train_classes": [0, 1], "params": {"no_such_option": [1]}}, {}, "no_such_option"),
        ({"train_classes": [0, 1], "params": {"lr": [-1.0]}}, {}, "train settings for"),
        ({"train_classes": [0, 1], "model": ["odm"]}, {}, "mines seen out-of-distribution images"),
        ({"train_classes": [0, 1], "model": ["odm"]}, {"ood": {"seen_synthetic": -1}}, "seen_synthetic"),
        ({"train_classes": [0, 1], "model": ["odm"]}, {"ood": {"seen_classes": [1]}}, "also a training class"),
        ({"train_classes": [0, 1], "model": ["odm"]}, {"ood": {"seen_classes": [12]}}, "unknown class '12'"),
        ({"train_classes": [0, 1]}, {"ood": {"anomaly_datasets": {"imagenet": "/x"}}}, "unknown dataset in ood"),
        ({"train_classes": [0, 1], "model": ["simclr", "anomaly_clustering"]}, {}, "cannot share a grid"),
    ],
)
def test_bad_family_configs_are_one_clear_line(grid, extra, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        parse_config({**raw(**grid), **extra})
    assert "\n" not in str(info.value)


def test_family_configs_validate_and_preflight_on_digits():
    for name in ("weak_metric_embedding", "odm"):
        cfg = load_config(bundled_config(name))
        assert len(cfg.trials()) >= 2
        preflight(cfg)
    for name in ("weak_metric_embedding_cifar10", "odm_cifar10"):
        cfg = load_config(bundled_config(name), ["dataset.root=/nowhere/cifar10"])
        with pytest.raises(ConfigError, match="/nowhere/cifar10"):
            preflight(cfg)


def test_class_set_sample_size_counts_the_whole_set():
    small = {"dataset": {"max_train_per_class": 30}, "score": {"sample_size": 40, "metrics": ["hausdorff"]}}
    preflight(parse_config({**raw(train_classes=[0, 1]), **small}))  # 2 x 30 training images >= 40
    single = parse_config({"name": "t", "experiment": "e", "grid": {"model": ["simclr"], "train_class": [0]}, **small})
    with pytest.raises(ConfigError, match="sample_size=40"):
        preflight(single)


def test_anomaly_clustering_config_validates_and_bad_input_is_one_line(tmp_path):
    cfg = load_config(bundled_config("anomaly_clustering"), [f"dataset.root={tmp_path / 'syn'}"])
    assert len(cfg.trials()) == 2 * 2 * 3 and cfg.is_clustering
    assert preflight(cfg) is None and (tmp_path / "syn" / "synthetic_object" / "train" / "good").is_dir()
    with pytest.raises(ConfigError, match=r"needs dataset.root"):
        load_config(bundled_config("anomaly_clustering"), ["dataset.name=mvtec", "grid.train_class=[bottle]"])
    cfg = load_config(
        bundled_config("anomaly_clustering"),
        ["dataset.name=mvtec", f"dataset.root={tmp_path / 'mvtec'}", "grid.train_class=[bottle]"],
    )
    with pytest.raises(ConfigError, match=str(tmp_path / "mvtec" / "bottle")):
        preflight(cfg)
    for override, needle in (
        ("grid.params.supervision=[semi]", "supervision must be one of"),
        ("grid.params.tau=[0]", "tau must be > 0"),
        ("grid.params.backbone=[vgg99]", "backbone must be one of"),
        ("train.model_options.anomaly_clustering.weights=/no/such.pth", "/no/such.pth"),
        ("dataset.name=digits", "unknown anomaly-clustering dataset 'digits'"),
    ):
        with pytest.raises(ConfigError, match=needle):
            load_config(bundled_config("anomaly_clustering"), [override])


def test_seen_ood_images_are_the_union_of_classes_dataset_and_synthetic_outliers():
    from experiments.data import DATASETS
    from experiments.data.noise import synthetic_outlier_images
    from sweeper.trial_data import seen_ood_images
    from sweeper.trial_data import train_split as _train_split

    base = {**raw(train_classes=[0, 1]), "grid": {"model": ["odm"], "train_classes": [0, 1]}}
    data = DATASETS["digits"].load(None, 16, False)
    train, _ = _train_split(data, ["0", "1"])
    only_synthetic = parse_config({**base, "ood": {"seen_synthetic": 10}, "score": {"sample_size": 20}})
    preflight(only_synthetic)  # synthetic outliers alone are a valid seen set for mining
    got = seen_ood_images(only_synthetic, data, train)
    assert torch.equal(got, synthetic_outlier_images(train, 10, seed=0, block=8))
    both = parse_config({**base, "ood": {"seen_classes": [5], "seen_synthetic": 6}})
    got = seen_ood_images(both, data, train)
    fives = data.train_images[data.train_labels == 5]
    assert len(got) == len(fives) + 6 and torch.equal(got[: len(fives)], fives)
    capped = parse_config({**base, "ood": {"seen_classes": [5, 6], "max_seen_images": 7, "seen_synthetic": 3}})
    assert len(seen_ood_images(capped, data, train)) == 7 + 3  # the cap applies to the real images only
