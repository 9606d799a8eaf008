"""`sweeper demo` end to end, as a user runs it: the console script in a fresh directory with MLflow's default store."""

from __future__ import annotations

import subprocess

import pytest
from mlflow.tracking import MlflowClient

from experiments.metrics import METRICS
from sweeper.config import bundled_config, load_config
from sweeper.status import sweep_status


@pytest.mark.slow
def test_sweeper_demo_runs_and_logs_every_trial(demo_run):
    proc, tmp_path = demo_run.proc, demo_run.dir
    assert proc.returncode == 0, demo_run.output[-3000:]
    assert "browse with: mlflow ui" in demo_run.output

    cfg = load_config(bundled_config("demo"))
    db = tmp_path / "mlflow.db"
    assert db.exists(), "the demo should use MLflow's default store in the working directory"
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name(cfg.experiment)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("sweeper.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("sweeper.role") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == len(cfg.trials()) == 8
    n_classes = len(cfg.class_names())
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        scores = [k for k in run.data.metrics if k.startswith("score.")]
        cloud_metrics = [m for m in cfg.score.metric_names if m in METRICS]
        # every cloud metric for every eval class; knn_auroc for every class but the training class; auroc, fpr95,
        # aupr_in, aupr_out for the two OoD sets (novelty: the other classes; gaussian_noise); no nc_accuracy with
        # one training class (it would be 1.0 by construction)
        assert len(scores) == n_classes * len(cloud_metrics) + (n_classes - 1) + 4 * 2
        assert {"score.auroc.novelty.mean", "score.fpr95.gaussian_noise.mean"} <= set(scores)
        assert "score.nc_accuracy.in_distribution.mean" not in scores
        arts = {a.path for d in ("model", "embeddings", "scores") for a in client.list_artifacts(run.info.run_id, d)}
        assert {"model/weights.pt", "embeddings/test.parquet", "scores/scores.parquet"} <= arts
    assert (tmp_path / "reports" / "demo" / "index.html").is_file()
    logged = {a.path for a in client.list_artifacts(parents[0].info.run_id, "report")}
    assert "report/index.html" in logged and "report/figures" in logged
    summary = parents[0].data.metrics
    for metric in cloud_metrics:
        assert 0 <= summary[f"baseline_nearest.{metric}"] <= 8


@pytest.mark.slow
def test_every_demo_score_row_has_an_interval(demo_run):
    """With ``metrics: all`` (cloud metrics, k-NN AUROC and the detection scores) no row of any trial's tidy table
    has a NaN ``mean``, ``ci_low`` or ``ci_high``; ``full`` is NaN only for MTopDiv, which was not asked for."""
    from analysis import load_scores

    assert demo_run.proc.returncode == 0, demo_run.output[-3000:]
    df = load_scores(load_config(bundled_config("demo")).experiment, tracking_uri=demo_run.uri)
    assert {"auroc", "fpr95", "knn_auroc", "hausdorff"} <= set(df.metric)
    assert not df[["mean", "ci_low", "ci_high"]].isna().any().any()
    assert set(df.loc[df["full"].isna(), "metric"]) <= {"mtopdiv"}


@pytest.mark.slow
def test_demo_terminal_shows_a_model_column_no_checkpoint_noise_and_a_status(demo_run):
    """What the user sees (issue 18): the trial table has the grid's columns with both models and readable trial
    names, no ``Checkpoint successfully created`` line or MLflow download bar reaches the terminal, and
    ``sweeper status demo`` answers during the run (every trial listed) and after it."""
    out, tmp_path = demo_run.output, demo_run.dir
    assert demo_run.proc.returncode == 0, out[-4000:]
    assert demo_run.during and all(len(states) == 8 for states in demo_run.during)
    assert any("finished" not in states for states in demo_run.during)  # seen while trials were still to run
    assert "Checkpoint successfully created" not in out
    assert "Exception ignored" not in out and "Traceback" not in out, out[-4000:]  # a clean exit reads clean
    assert "Downloading artifacts" not in out
    headers = [line for line in out.splitlines() if "| model" in line]
    assert headers and all("train_class" in h and "augmentation" in h and "params" not in h for h in headers)
    # the metric columns appear once a trial has reported (Tune's first table may come before any result)
    assert any("epoch" in h and "loss" in h for h in headers), headers[-1]
    table_rows = [line for line in out.splitlines() if "simclr-0-none-s0" in line or "barlow_twins-0-none-s0" in line]
    assert any("simclr" in r for r in table_rows) and any("barlow_twins" in r for r in table_rows)
    storage = str(tmp_path / "ray_results")
    trials, parent_status = sweep_status("demo", storage=storage)
    assert [t.state for t in trials] == ["finished"] * 8 and parent_status == "FINISHED"
    status = subprocess.run(
        [str(demo_run.exe), "status", "demo", "--storage-path", storage],
        env=demo_run.env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert status.returncode == 0, status.stderr
    assert "8 trials: 8 finished, 0 running, 0 failed, 0 pending" in status.stdout
    assert list((tmp_path / "ray_results" / "demo").glob("simclr-0-none-s0_*"))
