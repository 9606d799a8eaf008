"""`sweeper demo` end to end, as a user runs it: the console script in a fresh directory with MLflow's default store."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from experiments.metrics import METRICS
from sweeper.config import bundled_config, load_config


@pytest.mark.slow
def test_sweeper_demo_runs_and_logs_every_trial(demo_run):
    proc, tmp_path = demo_run.proc, demo_run.dir
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "browse with: mlflow ui" in proc.stderr

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
        # aupr_in, aupr_out for the two OoD sets (novelty: the other classes; gaussian_noise) and nc_accuracy
        assert len(scores) == n_classes * len(cloud_metrics) + (n_classes - 1) + 4 * 2 + 1
        assert {
            "score.auroc.novelty.mean",
            "score.fpr95.gaussian_noise.mean",
            "score.nc_accuracy.in_distribution.mean",
        } <= set(scores)
        arts = {a.path for d in ("model", "embeddings", "scores") for a in client.list_artifacts(run.info.run_id, d)}
        assert {"model/weights.pt", "embeddings/test.parquet", "scores/scores.parquet"} <= arts
    assert (tmp_path / "reports" / "demo" / "index.html").is_file()
    logged = {a.path for a in client.list_artifacts(parents[0].info.run_id, "report")}
    assert "report/index.html" in logged and "report/figures" in logged
    summary = parents[0].data.metrics
    for metric in cloud_metrics:
        assert 0 <= summary[f"baseline_nearest.{metric}"] <= 8
