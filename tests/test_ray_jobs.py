"""A sweep submitted through the Ray Jobs API to a local two-node Ray cluster."""

from __future__ import annotations

import time

import pytest
import yaml
from cluster_support import free_port
from conftest import start_session_ray
from mlflow.tracking import MlflowClient
from ray.cluster_utils import Cluster
from ray.job_submission import JobStatus, JobSubmissionClient

pytestmark = pytest.mark.slow


def _submit_when_an_agent_answers(client: JobSubmissionClient, timeout_s: float = 180, **job) -> str:
    """``client.submit_job(**job)``, retried while the head answers "No available agent to submit job" (its job
    agent is still starting: on a loaded 2-core machine that can take a while after the cluster is up)."""
    deadline = time.time() + timeout_s
    while True:
        try:
            return client.submit_job(**job)
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.time() > deadline:
                raise
            time.sleep(2)


@pytest.fixture
def no_session_ray():
    """This test builds its own two-node cluster: the session's local Ray (if an earlier test started it) is shut
    down for its duration and started again afterwards, as the other tests expect it."""
    import ray

    was_up = ray.is_initialized()
    if was_up:
        ray.shutdown()
    yield
    if was_up and not ray.is_initialized():
        start_session_ray()


def test_sweep_submitted_as_a_ray_job_runs_trials_on_both_nodes(tmp_path, no_session_ray):
    port = free_port()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2,
            "include_dashboard": True,
            "dashboard_host": "127.0.0.1",
            "dashboard_port": port,
            # Every Ray instance's dashboard agent listens on 52365 by default; while another test's Ray (another
            # xdist worker's) holds it, this head's agent cannot start and job submission answers "No available
            # agent" for good (CI: 211 s of retries). Cluster gives the added node a free port by itself.
            "dashboard_agent_listen_port": free_port(),
        },
    )
    cluster.add_node(num_cpus=2)
    try:
        config = tmp_path / "jobs.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "name": "jobs",
                    "experiment": "jobs-exp",
                    "dataset": {
                        "name": "digits",
                        "classes": ["0", "1", "2"],
                        "max_train_per_class": 20,
                        "max_test_per_class": 10,
                    },
                    "grid": {"model": ["simclr"], "train_class": ["0", "1"], "augmentation": ["none"]},
                    "train": {"epochs": 2, "batch_size": 10, "lr": 0.01},
                    "score": {"n_resamples": 3, "sample_size": 6, "metrics": ["hausdorff"]},
                    # 2 CPUs per trial on 2-CPU nodes: two trials at once must go to two nodes
                    "resources": {"cpus_per_trial": 1, "bootstrap_workers": 1},
                    "tune": {"storage_path": str(tmp_path / "ray_results"), "max_failures": 0},
                }
            )
        )
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        client = JobSubmissionClient(f"http://127.0.0.1:{port}")
        job = _submit_when_an_agent_answers(
            client,
            entrypoint=f"sweeper run {config} --report-dir {tmp_path / 'report'}",
            runtime_env={"env_vars": {"MLFLOW_TRACKING_URI": uri}},
        )
        deadline = time.time() + 600
        while client.get_job_status(job) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
            assert time.time() < deadline, "job did not finish in time"
            time.sleep(2)
        assert client.get_job_status(job) == JobStatus.SUCCEEDED, client.get_job_logs(job)[-3000:]

        mlflow = MlflowClient(uri)
        exp = mlflow.get_experiment_by_name("jobs-exp")
        runs = mlflow.search_runs([exp.experiment_id])
        children = [r for r in runs if r.data.tags.get("sweeper.role") == "trial"]
        assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
        nodes = {r.data.tags["sweeper.node_id"] for r in children}
        assert len(nodes) == 2, "the two trials should have run on the two nodes"
        assert (tmp_path / "report" / "index.html").is_file()
    finally:
        cluster.shutdown()
