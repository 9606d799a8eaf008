"""Shared fixtures: one local Ray for the whole test session; MLflow stores under pytest's tmp_path; one run of the
real ``sweeper demo`` shared by the tests that read its store."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def pytest_addoption(parser):
    parser.addoption(
        "--cluster",
        action="store_true",
        help="run the multi-node cluster tests (marked `cluster`); .ci/run runs them as their own step",
    )


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cluster`` (``ray up`` over SSH on loopback nodes, S3 through moto) run only with
    ``--cluster``: ``.ci/run`` runs them as a step of their own, after the suite."""
    if config.getoption("--cluster"):
        return
    skip = pytest.mark.skip(reason="a cluster test: run with `python -m pytest -m cluster --cluster` (its own CI step)")
    for item in items:
        if "cluster" in item.keywords:
            item.add_marker(skip)


os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


@pytest.fixture(scope="session")
def local_ray():
    """A real local Ray instance (2 CPUs), started once and shared by every test of the session that asks for it
    (``ray.init`` costs about 8 s). Tests that need their own cluster shape (several nodes, a killed driver) start
    it themselves, in a subprocess or with ``ray.cluster_utils.Cluster``."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The real ``sweeper demo``, run once as a user runs it (the console script in a fresh directory, MLflow's
    default store there, ``HOME`` there so Tune's default storage lands there too). Returns the directory and the
    finished process; the tests that read the demo's store share it."""
    import subprocess
    import sys
    from pathlib import Path
    from types import SimpleNamespace

    tmp = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env["HOME"] = str(tmp)
    exe = Path(sys.executable).with_name("sweeper")
    proc = subprocess.run([str(exe), "demo"], cwd=tmp, env=env, capture_output=True, text=True, timeout=900)
    return SimpleNamespace(dir=tmp, proc=proc, uri=f"sqlite:///{tmp / 'mlflow.db'}")


@pytest.fixture
def ray_starts(monkeypatch) -> list:
    """Every call of ``sweeper.tune.init_ray`` and ``ray.init`` during the test (recorded, then let through): a
    bad-input test asserts it stays empty. ``ray.is_initialized()`` cannot tell, as the session's Ray may be up."""
    import ray

    import sweeper.tune

    calls: list = []
    real_init_ray, real_ray_init = sweeper.tune.init_ray, ray.init

    def record(real):
        def wrapper(*args, **kwargs):
            calls.append((real.__name__, args, kwargs))
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(sweeper.tune, "init_ray", record(real_init_ray))
    monkeypatch.setattr(ray, "init", record(real_ray_init))
    return calls


@pytest.fixture
def tracking_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def tiny_config(tmp_path, **changes):
    """A tiny digits sweep for integration tests: 3 eval classes, 24 training / 12 test images per class, 1 epoch,
    4 resamples of 8 points; Tune state under ``tmp_path``. ``changes`` are ``section__field=value`` (or a top-level
    ``key=value``), e.g. ``tiny_config(tmp, grid__model=["simclr"], name="other")``."""
    from sweeper.config import parse_config

    raw = {
        "name": "tiny",
        "experiment": "tiny-exp",
        "dataset": {"name": "digits", "classes": ["0", "1", "2"], "max_train_per_class": 24, "max_test_per_class": 12},
        "grid": {
            "model": ["simclr", "barlow_twins"],
            "train_class": ["1"],
            "augmentation": ["none", "non_rigid"],
            "seed": [0],
        },
        "train": {"epochs": 1, "batch_size": 16, "lr": 0.01},
        "score": {
            "n_resamples": 4,
            "sample_size": 8,
            "seed": 3,
            "metrics": ["hausdorff", "euclidean", "mtopdiv", "knn_auroc"],
            "knn_k": 3,
        },
        "resources": {"cpus_per_trial": 1, "bootstrap_workers": "auto"},
        "tune": {"storage_path": str(tmp_path / "ray_results"), "max_failures": 0},
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            raw.setdefault(section, {})[field] = value
        else:
            raw[section] = value
    return parse_config(raw)
