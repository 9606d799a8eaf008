"""gpus_per_trial resolution and the placeability check (sweeper.resources) against the shipped launcher configs,
and an unplaceable trial refused by the CLI before Tune starts (one line, exit 2, no MLflow run)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config

from sweeper import resources
from sweeper.bootstrap_plan import AUTO_WORKERS
from sweeper.config import ConfigError, ResourcesConfig, bundled_config

ROOT = Path(__file__).resolve().parent.parent
AWS = yaml.safe_load((ROOT / "cluster.yaml").read_text())
LOCAL = prepare_config(copy.deepcopy(yaml.safe_load((ROOT / "cluster" / "local.yaml").read_text())))
BUNDLED = sorted(p.stem for p in (ROOT / "experiments" / "configs").glob("*.yaml"))


def _bundles(cfg, gpus: float) -> list[dict[str, float]]:
    """The trial's placement group as tune.placement builds it, written out independently: the trial's bundle
    (CPUs, GPU) plus one bundle per bootstrap worker (``auto``: its largest shape, ``AUTO_WORKERS`` workers)."""
    head = {"CPU": cfg.cpus_per_trial, **({"GPU": gpus} if gpus else {})}
    workers = AUTO_WORKERS if cfg.bootstrap_workers == "auto" else cfg.bootstrap_workers
    return [head] + [{"CPU": cfg.cpus_per_bootstrap_worker}] * workers


def test_auto_resolves_against_the_launchers_node_types_not_the_live_cpu_head():
    types = resources.launcher_node_types(AWS)
    live_cpu_head = {"10.0.0.5/abc": {"CPU": 0.0, "memory": 1e10}}
    assert resources.resolve_gpus_per_trial("auto", types, live_cpu_head, AWS["head_node_type"]) == 1.0
    assert resources.resolve_gpus_per_trial(0.5, types, live_cpu_head) == 0.5
    # No launcher: the live nodes decide.
    assert resources.resolve_gpus_per_trial("auto", None, live_cpu_head) == 0.0
    assert resources.resolve_gpus_per_trial("auto", None, {"n": {"CPU": 4.0, "GPU": 1.0}}) == 1.0


def test_auto_on_a_launcher_whose_node_types_hide_their_resources_says_set_a_number():
    types = resources.launcher_node_types(LOCAL)
    assert types == {"local.cluster.node": None}
    with pytest.raises(ConfigError, match=r"set resources.gpus_per_trial to a number") as err:
        resources.resolve_gpus_per_trial("auto", types, {}, LOCAL["head_node_type"])
    assert "\n" not in str(err.value)


def test_launcher_config_is_found_at_the_env_path(tmp_path, monkeypatch):
    path = tmp_path / "ray_bootstrap_config.yaml"
    path.write_text(yaml.safe_dump(AWS))
    monkeypatch.setenv(resources.LAUNCHER_CONFIG_ENV, str(path))
    assert resources.gpus_for("auto") == 1.0  # Ray is not initialised here: no live node, only node types
    monkeypatch.setenv(resources.LAUNCHER_CONFIG_ENV, str(tmp_path / "missing.yaml"))
    assert resources.load_launcher_node_types() is None


@pytest.mark.parametrize("name", BUNDLED)
def test_every_shipped_trial_shape_fits_a_4_vcpu_1_gpu_node(name):
    cfg = ResourcesConfig.model_validate(yaml.safe_load(bundled_config(name).read_text()).get("resources", {}))
    types = resources.launcher_node_types(AWS)
    gpus = resources.resolve_gpus_per_trial(cfg.gpus_per_trial, types, {}, AWS["head_node_type"])
    bundles = _bundles(cfg, gpus)
    assert resources.fits(bundles, AWS["available_node_types"]["worker.gpu.1x"]["resources"])
    assert not resources.fits(bundles, AWS["available_node_types"]["head.cpu"]["resources"])
    assert resources.check_placeable(bundles, types, {}).startswith("node type worker.gpu")


def test_proj18_old_shape_of_6_cpus_fits_only_the_large_node():
    old = [{"CPU": 2.0, "GPU": 1.0}] + [{"CPU": 1.0}] * 4
    types = resources.launcher_node_types(AWS)
    assert resources.group_demand(old) == {"CPU": 6.0, "GPU": 1.0}
    assert not resources.fits(old, types["worker.gpu.1x"])
    assert resources.check_placeable(old, types, {}) == "node type worker.gpu.4x"
    only_small = {k: v for k, v in types.items() if k != "worker.gpu.4x"}
    with pytest.raises(ConfigError, match=r"needs \{CPU: 6, GPU: 1\} on one node"):
        resources.check_placeable(old, only_small, {})


def test_fits_agrees_with_a_brute_force_per_resource_sum():
    import itertools

    import numpy as np

    rng = np.random.default_rng(0)
    for _ in range(200):
        bundles = [
            {k: float(v) for k, v in zip(("CPU", "GPU"), rng.integers(0, 3, 2), strict=True) if rng.random() < 0.8}
            for _ in range(rng.integers(1, 5))
        ]
        cap = {"CPU": float(rng.integers(0, 8)), "GPU": float(rng.integers(0, 3))}
        # Brute force: place the bundles one by one, failing the first time any resource goes negative.
        left = dict(cap)
        ok = True
        for bundle, key in itertools.product(bundles, ("CPU", "GPU")):
            left[key] -= bundle.get(key, 0.0)
            ok &= left[key] >= 0
        assert resources.fits(bundles, cap) == ok


def test_live_nodes_are_candidates_and_unknown_types_only_warn(caplog):
    bundles = [{"CPU": 1.0}, {"CPU": 1.0}]
    assert resources.check_placeable(bundles, None, {"127.0.0.2/x": {"CPU": 2.0}}) == "node 127.0.0.2/x"
    with pytest.raises(ConfigError):
        resources.check_placeable(bundles, None, {"127.0.0.1/h": {"CPU": 0.0}, "127.0.0.2/x": {"CPU": 1.0}})
    assert resources.check_placeable(bundles, {"local.cluster.node": None}, {"127.0.0.1/h": {"CPU": 0.0}}) is None
    assert "do not declare resources" in caplog.text


@pytest.mark.slow
def test_cli_refuses_an_unplaceable_trial_before_tune_and_mlflow(tmp_path):
    """A local Ray of 1 CPU and a trial of 2 + 3 × 1 CPUs: one line on stderr, exit 2, no MLflow run."""
    db = tmp_path / "mlflow.db"
    cfg = {
        "name": "unplaceable",
        "experiment": "unplaceable-exp",
        "dataset": {"name": "digits", "classes": ["0", "1"], "max_train_per_class": 8, "max_test_per_class": 8},
        "grid": {"model": ["simclr"], "train_class": ["1"], "augmentation": ["none"], "seed": [0]},
        "train": {"epochs": 1, "batch_size": 8},
        "score": {"n_resamples": 2, "sample_size": 4, "metrics": ["hausdorff"]},
        "resources": {"cpus_per_trial": 2, "gpus_per_trial": 0, "bootstrap_workers": 3},
        "tracking": {"uri": f"sqlite:///{db}"},
        "tune": {"storage_path": str(tmp_path / "ray_results")},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code = (
        "import sys, ray; ray.init(address='local', num_cpus=1, include_dashboard=False, log_to_driver=False);"
        "from sweeper.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "run", str(path), "--no-report"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "SWEEPER_LAUNCHER_CONFIG": str(tmp_path / "none.yaml")},
    )
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("sweeper: error:")]
    assert out.returncode == 2, out.stderr[-2000:]
    assert len(errors) == 1 and "needs {CPU: 5} on one node" in errors[0], out.stderr[-2000:]
    assert not (tmp_path / "ray_results" / "unplaceable").exists()
    if db.exists():
        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"sqlite:///{db}")
        exps = [e.experiment_id for e in client.search_experiments()]
        assert client.search_runs(exps) == []
