"""Shared fixtures: one local Ray per test module that needs it; MLflow stores under pytest's tmp_path."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


@pytest.fixture(scope="module")
def local_ray():
    """A real local Ray instance (2 CPUs), shared by the tests of one module."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


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
