"""Scoring one trial's clouds: bootstrap every cloud metric (Ray tasks), one-class k-NN AUROC, separation of the
baseline; the result as the tidy score table, the raw resamples and the run's summary metrics.

Shared by the trial and by ``sweeper rescore`` so both produce identical tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from experiments.metrics import METRICS
from experiments.metrics.detection import knn_auroc
from experiments.metrics.separation import separation
from sweeper.bootstrap import bootstrap_scores

SCORE_COLUMNS = ["model", "train_class", "augmentation", "eval_class", "metric", "mean", "std", "ci_low", "ci_high",
                 "n_resamples", "sample_size", "p_baseline_below"]


@dataclass(frozen=True)
class ScoreSettings:
    """What to compute and how: metric names (cloud metrics and detection scores), bootstrap size and seed."""

    metrics: tuple[str, ...]
    n_resamples: int
    sample_size: int
    seed: int = 0
    knn_k: int = 5
    mtopdiv_backend: str = "auto"
    workers: int = 1
    cpus_per_task: float = 1.0


@dataclass
class TrialScores:
    """A trial's scores: the tidy ``table`` (without the model/train_class/augmentation columns), the ``raw``
    bootstrap resamples (``eval_class, metric, resample, value``) and the run's ``summary`` metrics."""

    table: pd.DataFrame
    raw: pd.DataFrame
    summary: dict[str, float]


def score_clouds(reference: np.ndarray, clouds: Mapping[str, np.ndarray], train_class: str,
                 s: ScoreSettings) -> TrialScores:
    """Score every cloud in ``clouds`` against the ``reference`` cloud with every metric of ``s``.

    Cloud metrics: one row per (eval class, metric) with the bootstrap mean, std, 95 % percentile interval and
    ``p_baseline_below`` = P(baseline value < this class's value) over the resamples (NaN on the baseline's row).
    ``knn_auroc``: one row per eval class other than the training class, ``mean`` = AUROC of the k-NN score for
    "training-class test images vs that class", std and a BCa interval from ``n_resamples`` bootstrap draws,
    ``sample_size`` = that class's test cloud size.

    Summary metrics: ``score.<metric>.<eval_class>.mean``; per cloud metric ``baseline_rank.<metric>`` (1 = the
    training class's own test cloud is the nearest), ``baseline_auroc.<metric>`` and
    ``p_baseline_below.<metric>.<eval_class>``; ``knn_auroc`` = mean one-vs-rest AUROC over the other classes.
    """
    cloud_metrics = [m for m in s.metrics if m in METRICS]
    frames, summary = [], {}
    raw = pd.DataFrame(columns=["eval_class", "metric", "resample", "value"])
    if cloud_metrics:
        table, raw = bootstrap_scores(
            reference, clouds, cloud_metrics, n_resamples=s.n_resamples, sample_size=s.sample_size, seed=s.seed,
            workers=s.workers, cpus_per_task=s.cpus_per_task,
            metric_options={"mtopdiv": {"backend": s.mtopdiv_backend}})
        table["p_baseline_below"] = np.nan
        if train_class in clouds and len(clouds) > 1:
            for metric, group in raw.groupby("metric", sort=False):
                values = {c: g["value"].to_numpy() for c, g in group.groupby("eval_class", sort=False)}
                sep = separation(values, train_class)
                rows = (table.metric == metric) & (table.eval_class != train_class)
                table.loc[rows, "p_baseline_below"] = table.loc[rows, "eval_class"].map(sep.p_baseline_below)
                summary[f"baseline_rank.{metric}"] = float(sep.baseline_rank)
                summary[f"baseline_auroc.{metric}"] = sep.auroc
                summary.update({f"p_baseline_below.{metric}.{c}": p for c, p in sep.p_baseline_below.items()})
        frames.append(table)
    if "knn_auroc" in s.metrics and train_class in clouds and len(clouds) > 1:
        others = {c: x for c, x in clouds.items() if c != train_class}
        res = knn_auroc(reference, clouds[train_class], others, k=s.knn_k, n_resamples=s.n_resamples, seed=s.seed)
        knn = pd.DataFrame([
            {"eval_class": c, "metric": "knn_auroc", "mean": r["auroc"], "std": r["std"], "ci_low": r["ci_low"],
             "ci_high": r["ci_high"], "n_resamples": s.n_resamples, "sample_size": len(others[c]),
             "p_baseline_below": np.nan} for c, r in res.items()])
        frames.append(knn)
        summary["knn_auroc"] = float(knn["mean"].mean())
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SCORE_COLUMNS[3:])
    summary.update({f"score.{r.metric}.{r.eval_class}.mean": float(r.mean) for r in table.itertuples()})
    return TrialScores(table, raw, summary)
