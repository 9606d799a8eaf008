"""Config schema, overrides, grid expansion and every bad input the CLI must reject before anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sweeper.cli import main
from sweeper.config import ConfigError, apply_overrides, bundled_config, load_config, parse_config, preflight

DEMO = bundled_config("demo")


def minimal(**extra):
    raw = {"name": "t", "experiment": "e", "grid": {"model": ["simclr"], "train_class": [0]}}
    raw.update(extra)
    return raw


def test_bundled_configs_validate():
    demo = load_config(DEMO)
    assert len(demo.trials()) == 8
    assert {t.model for t in demo.trials()} == {"simclr", "barlow_twins"}
    proj18 = load_config(bundled_config("proj18_cifar10"), ["dataset.root=/data/cifar10"])
    assert len(proj18.trials()) == 2 * 10 * 4
    assert proj18.train.settings_for("simclr").epochs == 100
    assert proj18.train.settings_for("barlow_twins").epochs == 150


def test_per_model_defaults_and_explicit_override():
    cfg = parse_config(minimal())
    s = cfg.train.settings_for("simclr")
    assert (s.optimizer, s.lr, s.momentum, s.weight_decay, s.schedule) == ("sgd", 6e-3, 0.9, 5e-4, "cosine")
    b = cfg.train.settings_for("barlow_twins")
    assert (b.optimizer, b.lr, b.momentum) == ("sgd", 0.06, 0.9)
    cfg = parse_config(minimal(train={"lr": 0.5, "epochs": 1}))
    assert cfg.train.settings_for("simclr").lr == 0.5
    assert cfg.train.settings_for("barlow_twins").epochs == 1


def test_per_model_overrides_win_over_train_fields():
    cfg = parse_config(
        minimal(train={"lr": 0.5, "batch_size": 32, "per_model": {"barlow_twins": {"lr": 0.01, "batch_size": 128}}})
    )
    assert cfg.train.settings_for("simclr").lr == 0.5 and cfg.train.settings_for("simclr").batch_size == 32
    bt = cfg.train.settings_for("barlow_twins")
    assert (bt.lr, bt.batch_size, bt.momentum) == (0.01, 128, 0.9)
    with pytest.raises(ConfigError, match=r"unknown model in train.per_model 'vit'"):
        parse_config(minimal(train={"per_model": {"vit": {"lr": 1.0}}}))
    with pytest.raises(ConfigError, match=r"train.per_model.simclr.lrr: unknown key"):
        parse_config(minimal(train={"per_model": {"simclr": {"lrr": 1.0}}}))


def test_grid_expansion_all_classes_and_trial_keys():
    cfg = parse_config(
        minimal(grid={"model": "simclr", "train_class": "all", "augmentation": ["none", "non_rigid"], "seed": [0, 1]})
    )
    trials = cfg.trials()
    assert len(trials) == 10 * 2 * 2
    assert trials[0].key == "model=simclr/train_class=0/augmentation=none/seed=0"
    assert len({t.key for t in trials}) == len(trials)
    restricted = parse_config(minimal(dataset={"classes": [3, 4, 5]}, grid={"model": ["simclr"], "train_class": "all"}))
    assert [t.train_class for t in restricted.trials()] == ["3", "4", "5"]


def test_overrides_parse_yaml_values_and_create_keys():
    raw = apply_overrides(
        minimal(),
        [
            "grid.model=[simclr, barlow_twins]",
            "train.epochs=1",
            "score.seed=7",
            "augmentations.gaussian_noise.sigma=0.2",
        ],
    )
    cfg = parse_config(raw)
    assert cfg.grid.model == ["simclr", "barlow_twins"]
    assert cfg.train.epochs == 1 and cfg.score.seed == 7
    assert cfg.augmentations["gaussian_noise"] == {"sigma": 0.2}


@pytest.mark.parametrize(
    "raw, needle",
    [
        (minimal(grid={"model": ["resnet_magic"], "train_class": [0]}), "unknown model 'resnet_magic'; valid: simclr"),
        (minimal(dataset={"name": "imagenet"}), "unknown dataset 'imagenet'; valid: digits, cifar10"),
        (
            minimal(grid={"model": ["simclr"], "train_class": [0], "augmentation": ["fog"]}),
            "unknown augmentation 'fog'; valid: none, gaussian_noise",
        ),
        (minimal(score={"metrics": ["cosine"]}), "unknown metric 'cosine'; valid: hausdorff"),
        (minimal(grid={"model": ["simclr"], "train_class": ["cat"]}), "unknown train_class"),
        (minimal(dataset={"classes": ["11"]}), "unknown class in dataset.classes"),
        (minimal(trian={"epochs": 1}), "trian: unknown key"),
        (minimal(train={"epochs": "many"}), "train.epochs"),
        (minimal(train={"optimizer": "lbfgs"}), "train.optimizer"),
        ({"experiment": "e", "grid": {"model": ["simclr"]}}, "name: required key is missing"),
        (
            minimal(
                augmentations={"gaussian_noise": {"sigma": -1}},
                grid={"model": ["simclr"], "train_class": [0], "augmentation": ["gaussian_noise"]},
            ),
            "sigma must be >= 0",
        ),
        (
            minimal(
                augmentations={"gaussian_blur": {"radius": 2}},
                grid={"model": ["simclr"], "train_class": [0], "augmentation": ["gaussian_blur"]},
            ),
            "bad parameters for augmentation 'gaussian_blur'",
        ),
        (
            minimal(dataset={"name": "cifar10"}, grid={"model": ["simclr"], "train_class": ["cat"]}),
            "needs dataset.root",
        ),
        (
            minimal(dataset={"name": "cifar10", "root": "/x"}),
            "CIFAR-10 not found at /x/cifar-10-batches-py",  # the missing data first, not the digits' class '0'
        ),
        (minimal(score={"mtopdiv_backend": "cuda"}), "unknown score.mtopdiv_backend"),
        (minimal(resources={"bootstrap_workers": -1}), "resources.bootstrap_workers"),
    ],
)
def test_bad_config_is_one_clear_line(raw, needle):
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    msg = str(info.value)
    assert needle in msg
    assert "\n" not in msg


def test_bad_overrides():
    with pytest.raises(ConfigError, match=r"expected KEY.PATH=VALUE"):
        apply_overrides(minimal(), ["train.epochs"])
    with pytest.raises(ConfigError, match="not valid YAML"):
        apply_overrides(minimal(), ["grid.model=[simclr"])
    with pytest.raises(ConfigError, match="name is not a mapping"):
        apply_overrides(minimal(), ["name.x=1"])


def test_preflight_checks_sample_size_and_dataset_root(tmp_path):
    cfg = parse_config(minimal(score={"sample_size": 60}))
    with pytest.raises(ConfigError, match="sample_size=60 is larger than the test cloud of class '0'"):
        preflight(cfg)
    cfg = parse_config(minimal(dataset={"max_train_per_class": 20}, score={"sample_size": 30}))
    with pytest.raises(ConfigError, match="larger than the training cloud of class '0' \\(20 images\\)"):
        preflight(cfg)
    missing = tmp_path / "nowhere"
    cfg = parse_config(
        minimal(dataset={"name": "cifar10", "root": str(missing)}, grid={"model": ["simclr"], "train_class": ["cat"]})
    )
    with pytest.raises(ConfigError, match=f"CIFAR-10 not found at {missing}/cifar-10-batches-py"):
        preflight(cfg)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["validate", str(DEMO), "--set", "grid.model=[nope]"], "unknown model 'nope'"),
        (["run", str(DEMO), "--set", "score.sample_size=500"], "sample_size=500"),
        (["run", str(DEMO), "--set", "grid.augmentation=[fog]"], "unknown augmentation 'fog'"),
        (["run", str(DEMO), "--set", "grid.train_class=[42]"], "unknown train_class"),
        (
            [
                "run",
                str(DEMO),
                "--set",
                "dataset.name=cifar10",
                "--set",
                "dataset.root=/does/not/exist",
                "--set",
                "grid.train_class=[cat]",
            ],
            "/does/not/exist/cifar-10-batches-py",
        ),
        (["run", str(DEMO), "--set", "train.epochs"], "expected KEY.PATH=VALUE"),
        (["run", "missing.yaml"], "config file not found"),
        (["run", str(DEMO), "--set", "tracking.uri=sqlite:////no/such/dir/mlflow.db"], "is not writable"),
    ],
)
def test_cli_bad_input_exits_2_before_anything_starts(argv, needle, tmp_path, monkeypatch, capsys, ray_starts):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err
    assert len(err.splitlines()) == 1 and err.startswith("sweeper: error:")
    assert ray_starts == []
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


@pytest.mark.slow
def test_malformed_yaml_via_console_script(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    exe = Path(sys.executable).with_name("sweeper")
    proc = subprocess.run([str(exe), "run", str(bad)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("sweeper: error: malformed YAML in")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_validate_prints_trial_list(capsys):
    assert main(["validate", str(DEMO), "--set", "grid.seed=[0, 1]"]) == 0
    out = capsys.readouterr().out
    assert "16 trials" in out
    assert "model=barlow_twins/train_class=1/augmentation=gaussian_noise/seed=1" in out


def test_demo_config_is_the_documented_shape():
    raw = yaml.safe_load(DEMO.read_text())
    assert raw["dataset"]["name"] == "digits"
    assert len(raw["grid"]["model"]) >= 2 and len(raw["grid"]["train_class"]) >= 2
    assert len(raw["grid"]["augmentation"]) >= 2 and raw["score"]["metrics"] == "all"


def test_tracking_passwords_are_redacted():
    from sweeper.tracking import redact

    assert redact("postgresql://mlflow:s3cret@db:5432/mlflow") == "postgresql://mlflow:***@db:5432/mlflow"
    assert redact("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


@pytest.mark.slow
def test_report_of_an_unknown_experiment_is_bad_input(tmp_path, capsys):
    code = main(["report", "nope", "--out", str(tmp_path / "r"), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.splitlines()[-1].startswith("sweeper: error: no MLflow experiment named 'nope'")


def test_sqlite_store_keeps_artifacts_beside_the_database_not_in_the_launch_directory(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from sweeper.tracking import get_or_create_experiment

    store, launch = tmp_path / "store", tmp_path / "launch"
    store.mkdir()
    launch.mkdir()
    monkeypatch.chdir(launch)
    uri = f"sqlite:///{store / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp_id = get_or_create_experiment(client, "e", uri)
    assert client.get_experiment(exp_id).artifact_location == (store / "mlruns").as_uri()
    run = client.create_run(exp_id)
    (launch / "a.txt").write_text("x")
    client.log_artifact(run.info.run_id, str(launch / "a.txt"))
    assert list(store.glob("mlruns/*/artifacts/a.txt")) and not (launch / "mlruns").exists()
    assert get_or_create_experiment(client, "e", uri) == exp_id  # found again, not re-created
