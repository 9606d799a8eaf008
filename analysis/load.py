"""Reading logged sweeps back from MLflow into tidy pandas DataFrames (read-only)."""

from __future__ import annotations

import logging
import tempfile

import pandas as pd
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

SCORE_COLUMNS = ["model", "train_class", "augmentation", "eval_class", "metric", "mean", "std", "ci_low", "ci_high",
                 "n_resamples", "sample_size"]


def _experiment_id(client: MlflowClient, experiment: str) -> str:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments())
        raise ValueError(f"no MLflow experiment named {experiment!r}; experiments: {', '.join(names) or '(none)'}")
    return exp.experiment_id


def finished_trial_runs(experiment: str, tracking_uri: str | None = None) -> list:
    """The FINISHED trial runs of ``experiment``; others (FAILED, RUNNING…) are left out with one warning."""
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([_experiment_id(client, experiment)], filter_string="tags.`sweeper.role` = 'trial'",
                              max_results=50000)
    done = [r for r in runs if r.info.status == "FINISHED"]
    if len(done) < len(runs):
        log.warning("left out %d trial run(s) that are not FINISHED", len(runs) - len(done))
    return done


def load_scores(experiment: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """All finished trials' score tables (``scores/scores.parquet``) concatenated, with a ``run_id`` column."""
    client = MlflowClient(tracking_uri)
    frames = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in finished_trial_runs(experiment, tracking_uri):
            path = client.download_artifacts(run.info.run_id, "scores/scores.parquet", tmp)
            frames.append(pd.read_parquet(path).assign(run_id=run.info.run_id))
    if not frames:
        return pd.DataFrame(columns=SCORE_COLUMNS + ["run_id"])
    return pd.concat(frames, ignore_index=True)
