"""Scoring one trial's clouds: bootstrap every cloud metric (Ray tasks), one-class k-NN AUROC, separation of the
baseline; the result as the tidy score table, the raw resamples and the run's summary metrics.

Shared by the trial and by ``sweeper rescore`` so both produce identical tables.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from analysis.load import SCORE_COLUMNS as LOADED_SCORE_COLUMNS
from analysis.roles import role_of
from experiments.metrics import METRICS
from experiments.metrics.detection import (
    DETECTION_METRIC_NAMES,
    detection_metrics,
    knn_auroc,
    nc_accuracy,
    nearest_class_mean,
)
from experiments.metrics.detection_intervals import detection_intervals, wilson_interval
from experiments.metrics.full_cloud import full_cloud_values, resolve_full_metrics
from experiments.metrics.separation import separation
from sweeper.bootstrap import bootstrap_scores
from sweeper.metric_device import plan_metrics

log = logging.getLogger(__name__)

# The tidy score table's columns: one list, the reader's (DESIGN.md's contract).
SCORE_COLUMNS = list(LOADED_SCORE_COLUMNS)


def trial_score_seed(seed: int | str, trial_key: str) -> int:
    """The bootstrap seed of one trial: ``score.seed`` itself when it is an integer (shared by the whole sweep:
    trials that differ only in ``grid.seed`` reuse the same resample indices, common random numbers), or with
    ``per_trial`` the first 8 bytes of ``sha256(trial_key)`` as an integer below ``2**63`` (independent draws
    per trial, reproducible from the trial key)."""
    if seed == "per_trial":
        return int.from_bytes(hashlib.sha256(trial_key.encode()).digest()[:8], "big") % 2**63
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"score.seed must be an integer or 'per_trial', got {seed!r}")
    return seed


def metric_options_from_params(params: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """A run's metric options from its params (``metric_options``, see
    :meth:`sweeper.config.ScoreConfig.option_params`, and ``mtopdiv_backend``, ``auto`` when absent), as
    ``sweeper rescore`` reuses them."""
    options = json.loads(params["metric_options"]) if "metric_options" in params else {}
    options.setdefault("mtopdiv", {})["backend"] = params.get("mtopdiv_backend", "auto")
    return options


@dataclass(frozen=True, kw_only=True)
class ScoreSettings:
    """What to compute and how: metric names (cloud metrics and detection scores), bootstrap size and seed, the
    metrics' options (``score.metric_options``, checked against ``experiments.metrics.METRIC_SPECS``); built by
    keyword."""

    metrics: tuple[str, ...]
    n_resamples: int
    sample_size: int | tuple[int, ...]  # several sizes: each is scored (summary names of a later size: ".n<size>")
    seed: int = 0
    knn_k: int = 5
    metric_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # {"mtopdiv": {"backend": …}}
    workers: int = 1
    cpus_per_task: float = 1.0
    device: str = "cpu"  # the trial's device: its GPU when it holds one (see sweeper.metric_device)
    full_cloud: str | tuple[str, ...] = "auto"  # metrics with a full-cloud value (experiments.metrics.full_cloud)


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

    Every row gets its ``role`` (:func:`analysis.roles.role_of`): ``baseline`` for the cloud named
    ``train_class`` (the training key, classes joined with ``+``), ``in_distribution`` for a training class's own
    test cloud when the key names several, ``other`` for the rest. Comparisons use the ``other`` rows only.

    Cloud metrics: one row per (eval class, metric) with the bootstrap mean, ``median``, std, 95 % percentile
    interval and ``p_baseline_below`` = P(baseline value < this class's value) over the resamples (NaN except on
    ``other`` rows). The interval is the 2.5-97.5 % range of the *resample distribution* (the metric on clouds of
    ``sample_size`` points), not a confidence interval for the mean: it always contains the median, but on a skewed
    resample distribution it can exclude the mean (98 zeros and 2 values of 100: mean 2, interval [0, 0]).
    ``knn_auroc``: one row per ``other`` class, ``mean`` = AUROC of the k-NN score for "training-class test images
    vs that class", std, ``median`` of the bootstrap distribution and a BCa interval from ``n_resamples`` bootstrap
    draws, ``sample_size`` = that class's test cloud size.

    Summary metrics: ``score.<metric>.<eval_class>.mean``; per cloud metric ``baseline_rank.<metric>`` (1 = the
    baseline is the nearest among the baseline and the ``other`` classes), ``baseline_auroc.<metric>`` (baseline
    resamples vs the pooled ``other`` resamples) and ``p_baseline_below.<metric>.<eval_class>`` (``other`` classes);
    ``knn_auroc`` = mean one-vs-rest AUROC over the ``other`` classes.
    """
    cloud_metrics = [m for m in s.metrics if m in METRICS]
    roles = {c: role_of(c, train_class) for c in clouds}
    compared = [c for c in clouds if roles[c] == "other"]
    frames, summary = [], {}
    raw = pd.DataFrame(columns=["eval_class", "metric", "sample_size", "resample", "value"])
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
            metric_options=s.metric_options,
            device=s.device,
        )
        medians = raw.groupby(["eval_class", "metric", "sample_size"], sort=False)["value"].median()
        table["median"] = [
            float(medians[key]) for key in zip(table["eval_class"], table["metric"], table["sample_size"], strict=True)
        ]
        table["p_baseline_below"] = np.nan
        if train_class in clouds and compared:
            first = int(raw["sample_size"].iloc[0])
            for (metric, size), group in raw.groupby(["metric", "sample_size"], sort=False):
                values = {
                    c: g["value"].to_numpy()
                    for c, g in group.groupby("eval_class", sort=False)
                    if c == train_class or c in compared
                }
                sep = separation(values, train_class)
                rows = (table.metric == metric) & table.eval_class.isin(compared) & (table.sample_size == size)
                table.loc[rows, "p_baseline_below"] = table.loc[rows, "eval_class"].map(sep.p_baseline_below)
                sfx = "" if size == first else f".n{size}"
                summary[f"baseline_rank.{metric}{sfx}"] = float(sep.baseline_rank)
                summary[f"baseline_auroc.{metric}{sfx}"] = sep.auroc
                summary.update({f"p_baseline_below.{metric}.{c}{sfx}": p for c, p in sep.p_baseline_below.items()})
        table["full"] = _full_values(reference, clouds, cloud_metrics, s, table)
        frames.append(table)
    if "knn_auroc" in s.metrics and train_class in clouds and compared:
        others = {c: clouds[c] for c in compared}
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
                    "median": r["median"],
                    "full": r["auroc"],
                }
                for c, r in res.items()
            ]
        )
        frames.append(knn)
        summary["knn_auroc"] = float(knn["mean"].mean())
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SCORE_COLUMNS[3:])
    table["role"] = table["eval_class"].map(lambda c: role_of(c, train_class))
    table = table.reindex(columns=SCORE_COLUMNS[3:])
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
    mean classification of the in-distribution test images) under ``eval_class = "in_distribution"``, only with
    several training classes: with one there is one class mean and the accuracy is 1 by construction, so no row.
    Detection rows have role ``other`` (``in_distribution`` for the accuracy row); ``mean`` and ``full`` are the
    value on the whole sets, ``std``, ``median`` and the interval come from ``n_resamples`` bootstrap draws of the
    test points (:func:`experiments.metrics.detection_intervals.detection_intervals`, percentile), the accuracy's
    interval is Wilson's (no resamples, NaN std and median).
    """
    key = "+".join(train_classes)
    scored = dict(clouds)
    if len(train_classes) > 1:
        scored[key] = np.concatenate([clouds[c] for c in train_classes])
    cloud_settings = replace(s, metrics=tuple(m for m in s.metrics if m not in DETECTION_METRIC_NAMES))
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
        out_scores = nearest_class_mean(reference, reference_labels, cloud)[0]
        values = detection_metrics(in_scores, out_scores)
        measured = [m for m in wanted if m in values]
        intervals = detection_intervals(in_scores, out_scores, measured, n_resamples=s.n_resamples, seed=s.seed)
        rows += [_detection_row(name, m, values[m], len(cloud), s.n_resamples, *intervals[m]) for m in measured]
    if "nc_accuracy" in wanted and len(train_classes) > 1:
        correct = int(np.sum(np.asarray(predicted) == in_labels))
        low, high = wilson_interval(correct, len(in_test))
        accuracy = nc_accuracy(predicted, in_labels)
        rows.append(_detection_row("in_distribution", "nc_accuracy", accuracy, len(in_test), 0, np.nan, low, high))
    detection = pd.DataFrame(rows, columns=[*SCORE_COLUMNS[3:-2], "full"])
    detection["role"] = detection["eval_class"].map(lambda c: role_of(c, key))
    detection = detection[SCORE_COLUMNS[3:]]
    table = pd.concat([result.table, detection], ignore_index=True) if len(result.table) else detection
    summary = dict(result.summary)
    summary.update({f"score.{r.metric}.{r.eval_class}.mean": float(r.mean) for r in detection.itertuples()})
    return TrialScores(table, result.raw, summary)


def _detection_row(
    eval_class: str, metric: str, value: float, size: int, n_resamples: int, std: float, low: float, high: float
) -> dict:
    """One detection row of the tidy table: the whole-set value as ``mean`` and ``full``, with its interval."""
    return {
        "eval_class": eval_class,
        "metric": metric,
        "mean": value,
        "std": std,
        "ci_low": low,
        "ci_high": high,
        "n_resamples": n_resamples,
        "sample_size": size,
        "p_baseline_below": np.nan,
        "median": np.nan if np.isnan(std) else value,
        "full": value,
    }


def _full_values(
    reference: np.ndarray, clouds: Mapping[str, np.ndarray], metrics: list[str], s: ScoreSettings, table: pd.DataFrame
) -> list[float]:
    """The ``full`` column of the cloud-metric rows of ``table``: each metric of ``s.full_cloud`` on the whole
    clouds (:func:`experiments.metrics.full_cloud.full_cloud_values`, on the trial's device), NaN for the others and
    past a metric's size limit (the reason logged)."""
    wanted = resolve_full_metrics(s.full_cloud, metrics)
    options = plan_metrics(wanted, s.device, s.metric_options).options
    accepted = {
        m: {k: v for k, v in options.get(m, {}).items() if k in inspect.signature(METRICS[m]).parameters}
        for m in wanted
    }
    full = full_cloud_values(reference, clouds, wanted, METRICS, accepted)
    for reason in full.skipped:
        log.info("full-cloud value left out: %s", reason)
    return [full.values.get((m, c), float("nan")) for c, m in zip(table["eval_class"], table["metric"], strict=True)]
