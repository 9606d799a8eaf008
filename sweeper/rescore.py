"""``sweeper rescore``: add metrics to finished trials from their logged embeddings, in the same child runs.

Nothing is retrained and no run is created: for every FINISHED trial run of an experiment, the metrics it lacks are
computed (bootstrap resamples as Ray tasks, with the trial's own ``n_resamples``, ``sample_size`` and seed, so the
draws are the ones the original metrics used) and appended to its score tables and summary metrics. Running it
twice changes nothing.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field

import pandas as pd
from mlflow.tracking import MlflowClient

from analysis.load import finished_trial_runs
from sweeper import tracking
from sweeper.scoring import ScoreSettings, score_clouds
from sweeper.trial import log_scores

log = logging.getLogger(__name__)


@dataclass
class RescoreReport:
    """Which runs got which metrics."""

    updated: dict[str, list[str]] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)


def _clouds(frame: pd.DataFrame) -> dict[str, "pd.DataFrame"]:
    dims = [c for c in frame.columns if c.startswith("dim_")]
    return {str(c): g[dims].to_numpy() for c, g in frame.groupby("class_name", sort=False)}


def rescore(experiment: str, metrics: list[str], *, tracking_uri: str, workers: int = 1,
            cpus_per_task: float = 1.0) -> RescoreReport:
    """Compute the ``metrics`` each finished trial of ``experiment`` lacks and append them to its run."""
    client = MlflowClient(tracking_uri)
    report = RescoreReport()
    for run in finished_trial_runs(experiment, tracking_uri):
        rid, p = run.info.run_id, run.data.params
        with tempfile.TemporaryDirectory() as tmp:
            table = pd.read_parquet(client.download_artifacts(rid, "scores/scores.parquet", tmp))
            raw = pd.read_parquet(client.download_artifacts(rid, "scores/bootstrap.parquet", tmp))
            missing = [m for m in metrics if m not in set(table["metric"])]
            if not missing:
                report.unchanged.append(rid)
                continue
            reference = _clouds(pd.read_parquet(client.download_artifacts(rid, "embeddings/train.parquet", tmp)))
            clouds = _clouds(pd.read_parquet(client.download_artifacts(rid, "embeddings/test.parquet", tmp)))
        train_class = p["train_class"]
        settings = ScoreSettings(tuple(missing), int(p["n_resamples"]), int(p["sample_size"]), int(p["score_seed"]),
                                 int(p.get("knn_k", 5)), p.get("mtopdiv_backend", "auto"), workers, cpus_per_task)
        scores = score_clouds(reference[train_class], clouds, train_class, settings)
        log_scores(client, rid, p["model"], train_class, p["augmentation"], scores, previous=(table, raw))
        before = [m for m in run.data.tags.get("sweeper.rescored", "").split(",") if m]
        tracking.set_tags(client, rid, {"sweeper.rescored": ",".join(before + missing)})
        report.updated[rid] = missing
        log.info("run %s (%s): added %s", rid, run.data.tags.get(tracking.TRIAL_KEY), ", ".join(missing))
    return report
