"""Sweeps logging to real MLflow tracking servers on loopback: sqlite-backed, PostgreSQL-backed (concurrent trials),
an unreachable server (≥16 concurrent trials on the default local store: tests/test_concurrent_trials.py)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
from cluster_support import free_port
from conftest import tiny_config
from mlflow.tracking import MlflowClient

from sweeper import tracking
from sweeper.cli import main
from sweeper.config import bundled_config
from sweeper.tune import run_sweep


def tiny(tmp_path, name, **overrides):
    """A two-trial sweep with half-CPU bundles (two trials at once on 2 cores)."""
    defaults = dict(
        name=name,
        experiment=f"{name}-exp",
        grid__model=["simclr"],
        grid__train_class=["0", "1"],
        grid__augmentation=["none"],
        score__n_resamples=3,
        score__sample_size=6,
        score__metrics=["hausdorff", "euclidean"],
        resources__cpus_per_trial=0.5,
        resources__cpus_per_bootstrap_worker=0.5,
    )
    return tiny_config(tmp_path, **{**defaults, **overrides})


def start_mlflow_server(backend_uri: str, artifacts: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    exe = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [
            str(exe),
            "server",
            "--backend-store-uri",
            backend_uri,
            "--serve-artifacts",
            "--artifacts-destination",
            str(artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # MLflow 3's server job runner (GenAI jobs: a supervisor and ~7 huey consumer processes) serves no request
        # of ours; off, the server starts faster and leaves no consumer behind when the test stops it.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if requests.get(f"{uri}/health", timeout=2).ok:
                return proc, uri
        except requests.RequestException:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"mlflow server did not start: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group; SIGKILL to what is left after 30 s (a test's server, not a user's)."""
    os.killpg(proc.pid, 15)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(30)


def assert_sweep_logged(uri: str, cfg, n_trials: int) -> None:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(cfg.experiment)
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if r.data.tags.get("sweeper.role") == "trial"]
    parents = [r for r in runs if r.data.tags.get("sweeper.role") == "sweep"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == n_trials and all(r.info.status == "FINISHED" for r in children)
    assert len({r.data.tags["sweeper.trial_key"] for r in children}) == n_trials
    with tempfile.TemporaryDirectory() as tmp:
        for run in children:
            assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1]
            path = client.download_artifacts(run.info.run_id, "scores/scores.parquet", tmp)
            assert os.path.getsize(path) > 0
            assert {a.path for a in client.list_artifacts(run.info.run_id, "embeddings")} == {
                "embeddings/train.parquet",
                "embeddings/test.parquet",
            }


@pytest.mark.slow
def test_sweep_logs_to_a_sqlite_backed_tracking_server_over_http(local_ray, tmp_path):
    server, uri = start_mlflow_server(
        f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts", tmp_path / "server.log"
    )
    try:
        cfg = tiny(tmp_path, "httpsqlite")
        assert run_sweep(cfg, uri) == 0
        assert_sweep_logged(uri, cfg, 2)
        assert list((tmp_path / "artifacts").rglob("scores.parquet")), "artifacts must go through the server"
    finally:
        stop(server)


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    exe = shutil.which("initdb")
    return Path(exe).parent if exe else None


@pytest.fixture
def postgres(tmp_path):
    """A real PostgreSQL on loopback, run as the `postgres` user when the tests run as root."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed here (initdb not found; .ci/run installs it with apt-get)")
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server")
        as_user = ["runuser", "-u", "postgres", "--"]
    data = Path(tempfile.mkdtemp(prefix="sweeper-pg-"))
    if as_user:
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_user,
            str(bindir / "pg_ctl"),
            "-D",
            str(data / "db"),
            "-l",
            str(data / "log"),
            "-w",
            "-o",
            f"-h 127.0.0.1 -p {port} -k {data}",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            [*as_user, str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow"],
            check=True,
            capture_output=True,
        )
        yield tracking.postgresql_driver(f"postgresql://postgres@127.0.0.1:{port}/mlflow")
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.slow
def test_concurrent_sweep_against_a_postgresql_backed_tracking_server(local_ray, tmp_path, postgres):
    server, uri = start_mlflow_server(postgres, tmp_path / "artifacts", tmp_path / "server.log")
    try:
        cfg = tiny(tmp_path, "httppg", grid__train_class=["0", "1", "2"])
        assert run_sweep(cfg, uri) == 0
        assert_sweep_logged(uri, cfg, 3)
    finally:
        stop(server)


def test_unreachable_tracking_server_is_bad_input(tmp_path, monkeypatch, capsys):

    monkeypatch.chdir(tmp_path)
    port = free_port()  # nothing listens there
    code = main(["run", str(bundled_config("demo")), "--set", f"tracking.uri=http://127.0.0.1:{port}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"MLflow tracking server http://127.0.0.1:{port} is unreachable" in err
    assert not (tmp_path / "mlflow.db").exists()
