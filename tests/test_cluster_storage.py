"""Shared, durable storage against a real S3 API (moto's server on loopback): Tune's checkpoints and state in
``s3://``, MLflow artifacts through the head's server (cluster/mlflow-server.sh, --serve-artifacts into S3), resume
and ``sweeper report`` through it; the server script is idempotent and restarts a dead server."""

from __future__ import annotations

import os
import sys
import time

import pytest
from cluster_support import BUCKET, bucket_keys, free_port, mlflow_script, moto_s3, supervisor_children, write_settings
from conftest import tiny_config

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def s3_and_server(tmp_path_factory):
    """moto S3, the MLflow server (sqlite backend, artifacts into s3://BUCKET/mlflow) and a local Ray whose workers
    see the S3 endpoint: (s3 env, tracking URI, settings file)."""
    import ray

    tmp = tmp_path_factory.mktemp("s3")
    with moto_s3(tmp / "moto.log") as s3:
        port = free_port()
        settings = write_settings(
            tmp / "cluster.env",
            {
                **s3,
                "SWEEPER_ENV": sys.prefix,
                "SWEEPER_STATE": str(tmp / "state"),
                "SWEEPER_MLFLOW_PORT": str(port),
                "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp / 'mlflow.db'}",
                "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{BUCKET}/mlflow",
            },
        )
        saved = {k: os.environ.get(k) for k in s3}
        os.environ.update(s3)
        try:
            started = mlflow_script("start", settings)
            assert started.returncode == 0, started.stdout + started.stderr
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
            yield s3, f"http://127.0.0.1:{port}", settings
        finally:
            ray.shutdown()
            mlflow_script("stop", settings, 60)
            for k, v in saved.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def test_sweep_checkpoints_and_artifacts_land_in_the_bucket_and_resume_and_report_read_them(s3_and_server, tmp_path):
    from mlflow.tracking import MlflowClient

    from sweeper import tracking
    from sweeper.cli import main
    from sweeper.tune import run_sweep

    s3, uri, _ = s3_and_server
    storage = f"s3://{BUCKET}/tune"
    cfg = tiny_config(
        tmp_path,
        name="s3sweep",
        experiment="s3-exp",
        grid__model=["simclr"],
        train__epochs=2,
        tune={"storage_path": storage, "max_failures": 0},
        resources={"cpus_per_trial": 0.5, "cpus_per_bootstrap_worker": 0.5, "bootstrap_workers": 1},
    )
    assert run_sweep(cfg, uri) == 0
    keys = bucket_keys(s3)
    assert "tune/s3sweep/sweeper.json" in keys
    checkpoints = {k.split("/checkpoint_")[0] for k in keys if k.startswith("tune/s3sweep/") and "/checkpoint_" in k}
    assert len(checkpoints) == 2, keys  # one trial directory with checkpoints per trial
    assert not (tmp_path / "ray_results").exists()

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("s3-exp")
    assert exp.artifact_location.startswith("mlflow-artifacts:")
    parent = tracking.find_sweep_run(client, exp.experiment_id, "s3sweep")
    runs = list(tracking.child_runs(client, exp.experiment_id, parent.info.run_id))
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)

    def files(run_id, path=None):
        for f in client.list_artifacts(run_id, path):
            yield from files(run_id, f.path) if f.is_dir else [f.path]

    for run in [parent, *runs]:
        logged = set(files(run.info.run_id))
        assert logged, run.info.run_id
        in_bucket = {
            k.split("/artifacts/", 1)[1]
            for k in bucket_keys(s3, f"mlflow/{exp.experiment_id}/")
            if f"/{run.info.run_id}/artifacts/" in k
        }
        assert logged <= in_bucket, logged - in_bucket
    assert any(p.startswith("scores/") for r in runs for p in files(r.info.run_id))

    # Resume restores Tune's experiment from the bucket (every trial finished: nothing reruns).
    before = {r.info.run_id: r.info.end_time for r in runs}
    # Through the CLI: its before-Ray check must find sweeper.json in the bucket (a Path would mangle s3://).
    assert main(["resume", "s3sweep", "--storage-path", storage]) == 0
    after = {r.info.run_id: r.info.end_time for r in tracking.child_runs(client, exp.experiment_id, parent.info.run_id)}
    assert after == before
    assert main(["report", "s3-exp", "--out", str(tmp_path / "report"), "--tracking-uri", uri]) == 0
    assert (tmp_path / "report" / "index.html").is_file()
    assert any(
        k.split("/artifacts/", 1)[1].startswith("report/") for k in bucket_keys(s3, f"mlflow/{exp.experiment_id}/")
    )


def test_resume_of_an_unknown_sweep_in_the_bucket_says_which(s3_and_server, capsys):
    from sweeper.cli import main

    assert main(["resume", "nosuchsweep", "--storage-path", f"s3://{BUCKET}/tune"]) == 2
    assert "no sweep named 'nosuchsweep'" in capsys.readouterr().err


def test_mlflow_server_script_is_idempotent_and_restarts_a_dead_server(s3_and_server):
    _, uri, settings = s3_and_server
    pid = int((settings.parent / "state" / "mlflow-supervisor.pid").read_text())
    again = mlflow_script("start", settings)
    assert again.returncode == 0 and f"supervisor {pid}" in again.stdout, again.stdout + again.stderr
    assert int((settings.parent / "state" / "mlflow-supervisor.pid").read_text()) == pid
    (server,) = supervisor_children(pid)
    os.kill(server, 9)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not supervisor_children(pid) or supervisor_children(pid) == [server]):
        time.sleep(0.5)
    (restarted,) = supervisor_children(pid)
    assert restarted != server
    assert mlflow_script("start", settings).returncode == 0  # waits until the restarted server answers /health
    import requests

    assert requests.get(uri + "/health", timeout=10).ok
