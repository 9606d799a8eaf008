"""cluster.yaml and cluster/local.yaml are valid Ray cluster-launcher configs (Ray's own schema and its command
wrapper) with the layout the README promises, one source of commands, and no secret in them."""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.command_runner import _with_environment_variables, _with_interactive
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "cluster.yaml"
LOCAL = ROOT / "cluster" / "local.yaml"
COMMANDS = ("setup_commands", "head_setup_commands", "worker_setup_commands")
START = ("head_start_ray_commands", "worker_start_ray_commands")


@pytest.mark.parametrize("path", [CLUSTER, LOCAL], ids=["aws", "local"])
def test_cluster_yaml_passes_rays_schema(path):
    validate_config(prepare_config(copy.deepcopy(yaml.safe_load(path.read_text()))))


def test_cluster_layout_gpu_workers_cpu_head_s3_storage_nothing_on_all_interfaces():
    text = CLUSTER.read_text()
    config = yaml.safe_load(text)
    assert "0.0.0.0" not in text
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # the head schedules no trial work
    workers = {name: t for name, t in types.items() if name != config["head_node_type"]}
    assert workers and all(t["min_workers"] == 0 for t in workers.values())
    assert all(t["node_config"]["InstanceType"].startswith(("g", "p")) for t in workers.values())
    assert all(t["resources"].get("GPU", 0) >= 1 for t in workers.values())
    assert config["max_workers"] >= sum(t["max_workers"] for t in workers.values())
    ssh = config["provider"]["security_group"]["IpPermissions"]
    assert [r["CidrIp"] for p in ssh for r in p["IpRanges"]] and all(p["FromPort"] == 22 for p in ssh)
    settings = _settings(ROOT / "cluster" / "aws" / "cluster.env")
    assert settings["SWEEPER_STORAGE_PATH"].startswith("s3://")
    assert settings["MLFLOW_ARTIFACTS_DESTINATION"].startswith("s3://")
    node_sh = (ROOT / "cluster" / "node.sh").read_text()
    assert "--dashboard-host=127.0.0.1" in node_sh and "--num-cpus=0" in node_sh
    assert "[cluster]" in node_sh and "[gpu]" in node_sh  # the head gets boto3 for the AWS autoscaler


def test_local_yaml_shares_every_command_with_cluster_yaml():
    aws, local = (yaml.safe_load(p.read_text()) for p in (CLUSTER, LOCAL))
    for key in COMMANDS + START:
        assert local[key] == aws[key], key
        assert all(re.fullmatch(r"bash ~/embedding-sweeper/cluster/node\.sh [a-z-]+", c) for c in aws[key]), key
    assert local["file_mounts"]["~/embedding-sweeper"] == aws["file_mounts"]["~/embedding-sweeper"] == "."


def _settings(path: Path) -> dict[str, str]:
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return dict(ln.split("=", 1) for ln in lines)


def test_no_secret_in_configs_or_commands():
    """No password in the launcher configs or their settings; the database URI in node.sh carries none either."""
    texts = [CLUSTER.read_text(), LOCAL.read_text(), *(p.read_text() for p in (ROOT / "cluster").rglob("*.env"))]
    texts += [(ROOT / "cluster" / n).read_text() for n in ("node.sh", "mlflow-server.sh", "settings.sh")]
    for text in texts:
        assert not re.search(r"(postgresql|mysql)(\+\w+)?://[^/@\s:]+:[^@\s]+@", text)
        assert "PASSWORD '" not in text.replace("PASSWORD '%s'", "")
        assert not re.search(r"(?i)(aws_secret_access_key|password)\s*[:=]\s*\S", text.replace("PASSWORD '%s'", ""))


@pytest.mark.parametrize("command", [c for k in START for c in yaml.safe_load(CLUSTER.read_text())[k]])
def test_start_commands_do_not_match_their_own_wrapper(command):
    """Ray runs each command as ``bash --login -c -i '… && (CMD)'``: a ``pkill -f PATTERN`` inside CMD kills that
    wrapper (exit 143). No start command (nor the scripts they call) may kill processes by command-line pattern."""
    wrapped = _with_interactive(_with_environment_variables(command, {"RAY_HEAD_IP": "10.0.0.1"}))
    assert "node.sh" in " ".join(wrapped)
    for script in ("node.sh", "mlflow-server.sh", "settings.sh"):
        text = (ROOT / "cluster" / script).read_text()
        code = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
        assert not re.search(r"\b(pkill|killall)\b", code), script


def test_settings_file_is_read_as_data_not_executed(tmp_path):
    marker = tmp_path / "executed"
    env = tmp_path / "cluster.env"
    env.write_text(f"# comment\nSWEEPER_RAY_PORT=7000\nSWEEPER_STATE=~/st\nFOO=$(touch {marker})\n")
    out = subprocess.run(
        ["bash", "-c", f'. {ROOT}/cluster/settings.sh && echo $SWEEPER_RAY_PORT $SWEEPER_STATE && echo "$FOO"'],
        env={"SWEEPER_SETTINGS": str(env), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "SWEEPER_NODE_IP": "x"},
        capture_output=True,
        text=True,
        check=True,
    )
    lines = out.stdout.splitlines()
    assert lines[0] == f"7000 {tmp_path}/st"
    assert lines[1] == f"$(touch {marker})" and not marker.exists()
    assert oct((tmp_path / "st").stat().st_mode & 0o777) == "0o700"
