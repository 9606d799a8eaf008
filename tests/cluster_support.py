"""Helpers of the cluster tests: free loopback ports, moto's S3 server, the head's MLflow server through
cluster/mlflow-server.sh. Every process started here is stopped by the context manager that started it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MLFLOW_SCRIPT = ROOT / "cluster" / "mlflow-server.sh"
BUCKET = "sweeper-test"
FAKE_AWS = {  # moto accepts any credentials; these are not secrets
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s:.0f} s")


def stop_group(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Stop ``proc`` and its process group (it was started with ``start_new_session=True``)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


@contextlib.contextmanager
def moto_s3(log_path: Path) -> Iterator[dict[str, str]]:
    """moto's S3 API server on 127.0.0.1 with the bucket :data:`BUCKET`; yields the environment that points boto3,
    pyarrow and MLflow at it."""
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_port("127.0.0.1", port, 60)
        env = {**FAKE_AWS, "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}"}
        s3_client(env).create_bucket(Bucket=BUCKET)
        yield env
    finally:
        stop_group(proc)


def s3_client(env: dict[str, str]):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL_S3"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    )


def bucket_keys(env: dict[str, str], prefix: str = "") -> list[str]:
    client = s3_client(env)
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def state_records_a_checkpoint(env: dict[str, str], prefix: str) -> bool:
    """Whether a Tune experiment-state file under ``prefix`` in the bucket names a trial checkpoint.

    A checkpoint in the bucket is not enough for a resume: Tune restores a trial from the checkpoint its experiment
    state records, and that state is synced after the checkpoint lands. Tune stores the checkpoint manager as a
    hex-encoded cloudpickle (``CLOUDPICKLE_FALLBACK``); its bytes are searched, never unpickled."""
    import re

    client = s3_client(env)
    for key in bucket_keys(env, prefix):
        if not key.rsplit("/", 1)[-1].startswith("experiment_state"):
            continue
        text = client.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
        if any(b"checkpoint_0" in bytes.fromhex(h) for h in re.findall(r"(?:[0-9a-f]{2}){64,}", text)):
            return True
    return False


def write_settings(path: Path, settings: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    return path


def mlflow_script(action: str, settings: Path, timeout_s: float = 400.0) -> subprocess.CompletedProcess:
    """Run ``cluster/mlflow-server.sh ACTION`` with the settings file ``settings`` on 127.0.0.1."""
    env = {**os.environ, "SWEEPER_SETTINGS": str(settings), "SWEEPER_NODE_IP": "127.0.0.1"}
    return subprocess.run(
        ["bash", str(MLFLOW_SCRIPT), action], env=env, capture_output=True, text=True, timeout=timeout_s
    )


def supervisor_children(pid: int) -> list[int]:
    """The pids of the direct children of ``pid`` (the MLflow server under its supervisor loop)."""
    out = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = status.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(status.parent.name))
    return out
