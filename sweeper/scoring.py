"""Scoring one trial's clouds: bootstrap every cloud metric (Ray tasks), one-class k-NN AUROC, separation of the
baseline; the result as the tidy score table, the raw resamples and the run's summary metrics.

Shared by the trial and by ``sweeper rescore`` so both produce identical tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from experiments.metrics import METRICS
from experiments.metrics.detection import (
    DETECTION_METRIC_NAMES,
    detection_metrics,
    knn_auroc,
    nc_accuracy,
    nearest_class_mean,
)
from experiments.metrics.separation import separation
from sweeper.bootstrap import bootstrap_scores

SCORE_COLUMNS = [
    "model",
    "train_class",
    "augmentation",
    "eval_class",
    "metric",
    "mean",
    "std",
    "ci_low",
    "ci_high",
    "n_resamples",
    "sample_size",
    "p_baseline_below",
]


@dataclass(frozen=True)
class ScoreSettings:
    """What to compute and how: metric names (cloud metrics and detection scores), bootstrap size and seed."""

    metrics: tuple[str, ...]
    n_resamples: int
    sample_size: int | tuple[int, ...]  # several sizes: each is scored (summary names of a later size: ".n<size>")
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


def score_clouds(
    reference: np.ndarray, clouds: Mapping[str, np.ndarray], train_class: str, s: ScoreSettings
) -> TrialScores:
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
            reference,
            clouds,
            cloud_metrics,
            n_resamples=s.n_resamples,
            sample_size=s.sample_size,
            seed=s.seed,
            workers=s.workers,
            cpus_per_task=s.cpus_per_task,
            metric_options={"mtopdiv": {"backend": s.mtopdiv_backend}},
        )
        table["p_baseline_below"] = np.nan
        if train_class in clouds and len(clouds) > 1:
            first = int(raw["sample_size"].iloc[0])
            for (metric, size), group in raw.groupby(["metric", "sample_size"], sort=False):
                values = {c: g["value"].to_numpy() for c, g in group.groupby("eval_class", sort=False)}
                sep = separation(values, train_class)
                rows = (table.metric == metric) & (table.eval_class != train_class) & (table.sample_size == size)
                table.loc[rows, "p_baseline_below"] = table.loc[rows, "eval_class"].map(sep.p_baseline_below)
                sfx = "" if size == first else f".n{size}"
                summary[f"baseline_rank.{metric}{sfx}"] = float(sep.baseline_rank)
                summary[f"baseline_auroc.{metric}{sfx}"] = sep.auroc
                summary.update({f"p_baseline_below.{metric}.{c}{sfx}": p for c, p in sep.p_baseline_below.items()})
        frames.append(table)
    if "knn_auroc" in s.metrics and train_class in clouds and len(clouds) > 1:
        others = {c: x for c, x in clouds.items() if c != train_class}
        res = knn_auroc(reference, clouds[train_class], others, k=s.knn_k, n_resamples=s.n_resamples, seed=s.seed)
        knn = pd.DataFrame(
            [
                {
                    "eval_class": c,
                    "metric": "knn_auroc",
                    "mean": r["auroc"],
                    "std": r["std"],
                    "ci_low": r["ci_low"],
                    "ci_high": r["ci_high"],
                    "n_resamples": s.n_resamples,
                    "sample_size": len(others[c]),
                    "p_baseline_below": np.nan,
                }
                for c, r in res.items()
            ]
        )
        frames.append(knn)
        summary["knn_auroc"] = float(knn["mean"].mean())
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SCORE_COLUMNS[3:])
    first_size = int(raw["sample_size"].iloc[0]) if len(raw) else None
    summary.update(
        {
            f"score.{r.metric}.{r.eval_class}"
            f"{'' if r.metric not in METRICS or r.sample_size == first_size else f'.n{r.sample_size}'}.mean": float(
                r.mean
            )
            for r in table.itertuples()
        }
    )
    return TrialScores(table, raw, summary)


def score_trial(
    reference: np.ndarray,
    reference_labels: np.ndarray,
    clouds: Mapping[str, np.ndarray],
    anomalies: Mapping[str, np.ndarray],
    train_classes: list[str],
    seen_classes: list[str],
    class_labels: Mapping[str, int],
    s: ScoreSettings,
) -> TrialScores:
    """Every score of a trial: :func:`score_clouds` and, when configured, the detection scores.

    The training set's key is its classes joined with ``+``. With several training classes, the pooled test images
    of those classes are one more evaluated cloud under that key (the baseline: the in-distribution test cloud).

    Detection scores (Masana et al., BMVC 2018): every image is scored by its Euclidean distance to the nearest
    training-class mean of the ``reference`` embeddings (higher = more anomalous). In-distribution: the test images
    of the training classes; out-of-distribution sets: ``novelty`` (the test images of every class neither trained
    on nor in ``seen_classes``) and each anomaly set. One row per (set, metric) for ``auroc``, ``fpr95``,
    ``aupr_in``, ``aupr_out`` (``sample_size`` = the set's size, no resampling); ``nc_accuracy`` (nearest class
    mean classification of the in-distribution test images) under ``eval_class = "in_distribution"``.
    """
    key = "+".join(train_classes)
    scored = dict(clouds)
    if len(train_classes) > 1:
        scored[key] = np.concatenate([clouds[c] for c in train_classes])
    cloud_settings = ScoreSettings(
        tuple(m for m in s.metrics if m not in DETECTION_METRIC_NAMES),
        s.n_resamples,
        s.sample_size,
        s.seed,
        s.knn_k,
        s.mtopdiv_backend,
        s.workers,
        s.cpus_per_task,
    )
    result = score_clouds(reference, scored, key, cloud_settings)
    wanted = [m for m in DETECTION_METRIC_NAMES if m in s.metrics]
    if not wanted:
        return result
    in_test = np.concatenate([clouds[c] for c in train_classes])
    in_labels = np.concatenate([np.full(len(clouds[c]), class_labels[c]) for c in train_classes])
    in_scores, predicted = nearest_class_mean(reference, reference_labels, in_test)
    held_out = [c for c in clouds if c not in train_classes and c not in seen_classes]
    out_sets = ({"novelty": np.concatenate([clouds[c] for c in held_out])} if held_out else {}) | dict(anomalies)
    rows = []
    for name, cloud in out_sets.items():
        values = detection_metrics(in_scores, nearest_class_mean(reference, reference_labels, cloud)[0])
        rows += [
            {"eval_class": name, "metric": m, "mean": values[m], "sample_size": len(cloud)}
            for m in wanted
            if m in values
        ]
    if "nc_accuracy" in wanted:
        rows.append(
            {
                "eval_class": "in_distribution",
                "metric": "nc_accuracy",
                "mean": nc_accuracy(predicted, in_labels),
                "sample_size": len(in_test),
            }
        )
    detection = pd.DataFrame(rows).assign(
        std=np.nan, ci_low=np.nan, ci_high=np.nan, n_resamples=0, p_baseline_below=np.nan
    )[SCORE_COLUMNS[3:]]
    table = pd.concat([result.table, detection], ignore_index=True) if len(result.table) else detection
    summary = dict(result.summary)
    summary.update({f"score.{r.metric}.{r.eval_class}.mean": float(r.mean) for r in detection.itertuples()})
    return TrialScores(table, result.raw, summary)
