"""cluster.yaml is a valid Ray cluster-launcher config (Ray's own schema) with the layout the README promises."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER = Path(__file__).resolve().parent.parent / "cluster.yaml"


def test_cluster_yaml_passes_rays_schema():
    config = prepare_config(copy.deepcopy(yaml.safe_load(CLUSTER.read_text())))
    validate_config(config)


def test_cluster_layout_gpu_workers_mlflow_on_head_nothing_on_all_interfaces():
    text = CLUSTER.read_text()
    config = yaml.safe_load(text)
    assert "0.0.0.0" not in text
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert "GPU" not in head["resources"]
    workers = {name: t for name, t in types.items() if name != config["head_node_type"]}
    assert workers and all(t["min_workers"] == 0 for t in workers.values())
    assert all(t["node_config"]["InstanceType"].startswith(("g", "p")) for t in workers.values())
    head_start = " ".join(config["head_start_ray_commands"])
    assert "mlflow server" in head_start and "--serve-artifacts" in head_start
    assert "postgresql://" in head_start and "--dashboard-host=127.0.0.1" in head_start
    assert any("[gpu]" in c for c in config["worker_setup_commands"])
    assert any("postgresql" in c for c in config["head_setup_commands"])
    assert "MLFLOW_TRACKING_URI" in " ".join(config["worker_start_ray_commands"])
