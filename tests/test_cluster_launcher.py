"""The launcher end to end on one machine: Ray's ``local`` node provider (cluster/local.yaml, the commands of
cluster.yaml) against two SSH daemons on 127.0.0.1 (head) and 127.0.0.2 (worker), each in its own PID and mount
namespace with its own home and /tmp/ray (node-local disks; ``ray stop`` on a node sees only that node's processes).

``ray up -y``, then ``ray job submit --working-dir .`` of a 2-trial sweep whose driver is killed after its first
checkpoint reached S3 (moto on loopback), then a second job resuming it from S3; the trials run on the worker
(``sweeper.node_id`` in MLflow), log through the head's MLflow server into S3; ``sweeper report`` reads it; then
``ray down -y``. Skips, saying why, where sshd, unshare or root are missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cluster_support import (
    BUCKET,
    ROOT,
    bucket_keys,
    free_port,
    moto_s3,
    state_records_a_checkpoint,
    stop_group,
    wait_port,
    write_settings,
)

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1500)]

HEAD_IP, WORKER_IP = "127.0.0.1", "127.0.0.2"
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
VENV = Path(sys.prefix)
TRANSCRIPT = os.environ.get("SWEEPER_CLUSTER_TRANSCRIPT")


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (unshare of PID/mount namespaces, sshd)"
    if not Path(SSHD).exists():
        return "sshd not installed (apt-get install openssh-server)"
    for tool in ("unshare", "rsync", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    for ip in (HEAD_IP, WORKER_IP):
        with socket.socket() as s:
            try:
                s.bind((ip, 22))
            except OSError as exc:
                return f"port 22 on {ip} is taken ({exc.strerror})"
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        return f"unshare of PID/mount namespaces not permitted: {probe.stderr.decode().strip()}"
    return None


def _log(title: str, text: str) -> None:
    if TRANSCRIPT:
        with open(TRANSCRIPT, "a") as out:
            out.write(f"\n$ {title}\n{text.rstrip()}\n")


def _run(args: list[str], timeout: float, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    _log(" ".join(args), out.stdout + out.stderr)
    if check:
        assert out.returncode == 0, f"{args}: exit {out.returncode}\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out


@contextlib.contextmanager
def node(tmp: Path, ip: str, key: Path):
    """An SSH daemon on ``ip``:22 in fresh PID and mount namespaces, with its own /root and /tmp/ray."""
    base = tmp / ip
    home, tmp_ray = base / "home", base / "tmp-ray"
    for d in (home / ".ssh", tmp_ray):
        d.mkdir(parents=True)
    (home / ".bashrc").write_text(f". {VENV}/bin/activate\n")  # a provisioned machine: the env on PATH
    authorized = base / "authorized_keys"
    authorized.write_text(Path(f"{key}.pub").read_text())
    host_key = base / "host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    config = base / "sshd_config"
    config.write_text(
        f"ListenAddress {ip}:22\nHostKey {host_key}\nAuthorizedKeysFile {authorized}\nPidFile {base}/sshd.pid\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nPrintMotd no\nMaxStartups 100\nMaxSessions 100\nLogLevel ERROR\n"
    )
    Path("/tmp/ray").mkdir(exist_ok=True)
    # The interpreter may live under the real /root (pyenv): keep that folder visible in the node's own home.
    keep = [Path("/root", p.relative_to("/root").parts[0]) for p in _interpreter_dirs() if p.is_relative_to("/root")]
    binds = "".join(f"mkdir -p {home / k.name} && mount --bind {k} {home / k.name} && " for k in sorted(set(keep)))
    script = (
        f"{binds}mount --rbind {home} /root && mount --bind {tmp_ray} /tmp/ray && mkdir -p /run/sshd && "
        f"{{ {SSHD} -D -e -f {config} & wait; }}"
    )
    with open(base / "sshd.log", "wb") as log:
        proc = subprocess.Popen(
            # Raised priority: the raylet aborts when its agents take over 15 s to start (a fixed wait in Ray 2.60), which
            # a machine shared with other jobs reaches; every process of the node inherits it.
            [
                "nice",
                "-n",
                "-10",
                "unshare",
                "--pid",
                "--fork",
                "--mount-proc",
                "--mount",
                "--kill-child=SIGKILL",
                "bash",
                "-c",
                script,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_port(ip, 22, 60)
        yield home
    finally:
        stop_group(proc)  # the namespace's init dies: the kernel kills every process left in it


def _interpreter_dirs() -> list[Path]:
    return [Path(os.path.realpath(sys.executable)), Path(os.path.realpath(sys.base_prefix))]


def _settings(s3: dict[str, str], ports: dict[str, int]) -> dict[str, str]:
    return {
        **s3,
        "SWEEPER_ENV": str(VENV),
        "SWEEPER_INSTALL": "0",  # the machines are provisioned (the test's venv); no pip inside the test
        "SWEEPER_GPU_EXTRA": "0",
        "SWEEPER_RAY_PORT": str(ports["ray"]),
        "SWEEPER_DASHBOARD_PORT": str(ports["dashboard"]),
        "SWEEPER_MLFLOW_PORT": str(ports["mlflow"]),
        "SWEEPER_WORKER_CPUS": "1",
        # Ray's fixed default ports (dashboard agent 52365, Ray Client 10001) may be held by another Ray on this
        # machine: CI runs this step beside the rest of the suite, whose local Rays take 52365 first.
        "SWEEPER_HEAD_RAY_ARGS": f"--dashboard-agent-listen-port={free_port()} --ray-client-server-port={free_port()}",
        "SWEEPER_WORKER_RAY_ARGS": f"--dashboard-agent-listen-port={free_port()}",
        "SWEEPER_STORAGE_PATH": f"s3://{BUCKET}/tune",
        "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{BUCKET}/mlflow",
        "MLFLOW_BACKEND_STORE_URI": "sqlite:////root/.sweeper/mlflow.db",  # on the head's own disk
        "RAY_AUTH_MODE": "disabled",
    }


def _launcher_config(tmp: Path, key: Path, settings_dir: Path) -> Path:
    """cluster/local.yaml, as shipped, with this test's cluster name, key and settings folder."""
    config = yaml.safe_load((ROOT / "cluster" / "local.yaml").read_text())
    config["cluster_name"] = f"sweeper-test-{os.getpid()}"
    config["provider"].update(head_ip=HEAD_IP, worker_ips=[WORKER_IP])
    config["auth"] = {"ssh_user": "root", "ssh_private_key": str(key)}
    config["file_mounts"]["~/sweeper-cluster"] = str(settings_dir)
    path = tmp / "local.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _sweep_config(tmp: Path) -> Path:
    raw = {
        "name": "launcher",
        "experiment": "launcher-exp",
        "dataset": {"name": "digits", "classes": ["0", "1", "2"], "max_train_per_class": 48, "max_test_per_class": 12},
        "grid": {"model": ["simclr"], "train_class": ["1"], "augmentation": ["none", "non_rigid"], "seed": [0]},
        # A checkpoint every epoch and enough epochs that the driver is killed mid-training even on a fast machine
        # (by default a trial checkpoints only when its training ends: CI's runner killed the driver after one trial
        # had finished and before the other's first checkpoint, so the resume had nothing to restore).
        "train": {"epochs": 30, "batch_size": 16, "lr": 0.01, "checkpoint_every_epochs": 1},
        "score": {"n_resamples": 4, "sample_size": 8, "seed": 3, "metrics": ["hausdorff", "euclidean"]},
        # The worker has 1 CPU; the head has none. Tracking and storage come from the cluster's environment.
        "resources": {
            "cpus_per_trial": 0.5,
            "gpus_per_trial": 0,
            "bootstrap_workers": 1,
            "cpus_per_bootstrap_worker": 0.5,
        },
        "tune": {"max_failures": 0},
    }
    path = tmp / "launcher.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _wait(predicate, timeout_s: float, what: str, every: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what} not within {timeout_s:.0f} s")


def test_ray_up_job_submit_kill_resume_down_on_loopback_nodes(tmp_path):
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    from mlflow.tracking import MlflowClient
    from ray.job_submission import JobSubmissionClient
    from ray.util.state import list_nodes

    from sweeper import tracking

    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    ports = {"ray": free_port(), "dashboard": free_port(), "mlflow": free_port()}
    with (
        moto_s3(tmp_path / "moto.log") as s3,
        node(tmp_path, HEAD_IP, key) as head_home,
        node(tmp_path, WORKER_IP, key) as worker_home,
    ):
        write_settings(tmp_path / "settings" / "cluster.env", _settings(s3, ports))
        launcher = _launcher_config(tmp_path, key, tmp_path / "settings")
        env = {**os.environ, **s3, "RAY_AUTH_MODE": "disabled", "PATH": f"{VENV}/bin:{os.environ['PATH']}"}
        env["RAY_UP_enable_autoscaler_v2"] = "0"  # autoscaler v2 never launches a `local` provider's workers
        env.pop("RAY_ADDRESS", None)
        dashboard = f"http://127.0.0.1:{ports['dashboard']}"
        try:
            _run(["ray", "up", "-y", "--no-config-cache", str(launcher)], 900, env)
            assert (head_home / "ray_bootstrap_config.yaml").is_file()
            assert (head_home / "embedding-sweeper" / "cluster" / "node.sh").is_file()  # file_mounts synced
            nodes = _wait(
                lambda: (
                    [n for n in list_nodes(address=dashboard) if n.state == "ALIVE"]
                    if len([n for n in list_nodes(address=dashboard) if n.state == "ALIVE"]) == 2
                    else None
                ),
                600,
                "the worker node joining",
                3,
            )
            # Ray swaps a node IP of 127.0.0.1 for the host's own address; the worker keeps 127.0.0.2.
            worker = next(n for n in nodes if n.node_ip == WORKER_IP)
            (head,) = [n for n in nodes if n.node_id != worker.node_id]
            assert head.is_head_node and head.resources_total.get("CPU", 0) == 0
            assert worker.resources_total.get("CPU") == 1
            assert (worker_home / "embedding-sweeper" / "cluster" / "node.sh").is_file()  # synced to the worker too
            _log("nodes", "\n".join(f"{n.node_ip} {n.node_id} {n.resources_total}" for n in nodes))

            cfg = _sweep_config(tmp_path)
            py = f"{VENV}/bin/python"
            _run(
                [
                    "ray",
                    "job",
                    "submit",
                    "--address",
                    dashboard,
                    "--working-dir",
                    ".",
                    "--submission-id",
                    "sweep-1",
                    "--no-wait",
                    "--",
                    py,
                    "-m",
                    "sweeper.cli",
                    "run",
                    str(cfg),
                    "--no-report",
                ],
                600,
                env,
            )
            jobs = JobSubmissionClient(dashboard)
            # Kill the driver once Tune's experiment state in S3 records a trial's first checkpoint (a checkpoint file
            # alone is not enough: Tune resumes from the checkpoints its state names).
            _wait(
                lambda: (
                    state_records_a_checkpoint(s3, "tune/launcher/") or jobs.get_job_status("sweep-1").is_terminal()
                ),
                900,
                "a checkpoint recorded in S3",
                0.3,
            )
            _run(["ray", "job", "stop", "--address", dashboard, "sweep-1"], 300, env)
            status = _wait(lambda: (s := jobs.get_job_status("sweep-1")).is_terminal() and s, 120, "the job stopping")
            uri = f"http://{HEAD_IP}:{ports['mlflow']}"
            client = MlflowClient(uri)
            exp = client.get_experiment_by_name("launcher-exp")
            parent = tracking.find_sweep_run(client, exp.experiment_id, "launcher")
            killed = {
                r.data.tags[tracking.TRIAL_KEY]
                for r in tracking.child_runs(client, exp.experiment_id, parent.info.run_id)
                if r.info.status != "FINISHED"
            }
            _log("trials unfinished at the kill", "\n".join(sorted(killed)))
            assert status == "STOPPED" and killed, (status, killed)  # the driver died mid-sweep
            _log("ray job logs sweep-1 (tail)", "\n".join(jobs.get_job_logs("sweep-1").splitlines()[-25:]))
            assert "tune/launcher/sweeper.json" in bucket_keys(s3, "tune/launcher/")
            resume = _run(
                [
                    "ray",
                    "job",
                    "submit",
                    "--address",
                    dashboard,
                    "--working-dir",
                    ".",
                    "--submission-id",
                    "sweep-2",
                    "--",
                    py,
                    "-m",
                    "sweeper.cli",
                    "resume",
                    "launcher",
                ],
                900,
                env,
                check=False,
            )
            assert jobs.get_job_status("sweep-2") == "SUCCEEDED", resume.stdout[-6000:]

            runs = list(tracking.child_runs(client, exp.experiment_id, parent.info.run_id))
            assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
            assert {r.data.tags["sweeper.node_id"] for r in runs} == {worker.node_id}
            summary = {r.data.tags[tracking.TRIAL_KEY]: r.data.tags.get("sweeper.resumed_from_epoch") for r in runs}
            _log("trial runs (key: resumed_from_epoch)", json.dumps(summary, indent=1))
            # a trial killed after its first recorded checkpoint continues from it (from S3) instead of from epoch 0
            assert any(summary[k] not in (None, "0") for k in killed), summary
            keys = bucket_keys(s3)
            assert any(k.startswith(f"mlflow/{exp.experiment_id}/") and "/scores/" in k for k in keys)
            assert sum("/checkpoint_" in k for k in keys) >= 2
            for home in (head_home, worker_home):
                assert not (home / "ray_results" / "launcher").exists()  # nothing on node-local disks
            _run(
                [
                    py,
                    "-m",
                    "sweeper.cli",
                    "report",
                    "launcher-exp",
                    "--out",
                    str(tmp_path / "report"),
                    "--tracking-uri",
                    uri,
                ],
                600,
                env,
            )
        finally:
            _run(["ray", "down", "-y", str(launcher)], 300, env, check=False)
