"""Bootstrap scoring of embedding clouds as Ray tasks.

For every evaluated class ``c`` and resample ``r``: draw ``sample_size`` points with replacement from the reference
cloud (the training class's training images) and from class ``c``'s test cloud, and evaluate every metric on the pair
(reference sample first, as proj18 passes the training-class sample first to MTopDiv). The draws depend only on
``seed`` and the class's position, not on the number of workers or tasks, and are shared by all trials of a sweep
(common random numbers). The clouds go into Ray's object store once; each task scores a block of resamples.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd
import ray

from experiments.metrics import METRICS

SUMMARY_COLUMNS = ["eval_class", "metric", "mean", "std", "ci_low", "ci_high", "n_resamples", "sample_size"]


def draw_indices(n_reference: int, n_eval: int, n_resamples: int, sample_size: int, seed: int,
                 class_position: int) -> tuple[np.ndarray, np.ndarray]:
    """Resample indices ``(n_resamples, sample_size)`` into the reference and the evaluated cloud, with replacement."""
    rng = np.random.default_rng([seed, class_position])
    ref = rng.integers(0, n_reference, size=(n_resamples, sample_size))
    ev = rng.integers(0, n_eval, size=(n_resamples, sample_size))
    return ref, ev


def score_block(reference: np.ndarray, cloud: np.ndarray, ref_idx: np.ndarray, eval_idx: np.ndarray,
                metrics: list[str], metric_options: Mapping[str, Mapping[str, Any]]) -> np.ndarray:
    """Values ``(len(metrics), len(ref_idx))`` of every metric on every resample of the block."""
    out = np.empty((len(metrics), len(ref_idx)))
    for j, (ri, ei) in enumerate(zip(ref_idx, eval_idx)):
        P, Q = reference[ri], cloud[ei]
        for i, name in enumerate(metrics):
            out[i, j] = METRICS[name](P, Q, **metric_options.get(name, {}))
    return out


@ray.remote
def _score_block_task(clouds: dict[str, np.ndarray], eval_class: str, ref_idx: np.ndarray, eval_idx: np.ndarray,
                      metrics: list[str], metric_options: Mapping[str, Mapping[str, Any]]) -> np.ndarray:
    return score_block(clouds["__reference__"], clouds[eval_class], ref_idx, eval_idx, metrics, metric_options)


def bootstrap_scores(reference: np.ndarray, clouds: Mapping[str, np.ndarray], metrics: list[str], *,
                     n_resamples: int, sample_size: int, seed: int, workers: int = 1,
                     cpus_per_task: float = 1.0, metric_options: Mapping[str, Mapping[str, Any]] | None = None,
                     tasks_per_worker: int = 4) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Bootstrap every metric between ``reference`` and each cloud in ``clouds`` with Ray tasks.

    Returns:
        ``(summary, raw)``: ``summary`` has one row per (eval class, metric) with the mean, the standard deviation
        (ddof=1) and the 95 % percentile interval of the resampled values; ``raw`` holds every value
        (``eval_class, metric, resample, value``).
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid: {', '.join(METRICS)}")
    too_small = {c: len(x) for c, x in clouds.items() if len(x) < sample_size}
    if len(reference) < sample_size or too_small:
        raise ValueError(f"sample_size={sample_size} exceeds a cloud (reference {len(reference)}, small: {too_small})")
    metric_options = dict(metric_options or {})
    store = ray.put({"__reference__": reference, **clouds})
    blocks = max(1, math.ceil(workers * tasks_per_worker / max(len(clouds), 1)))
    block_size = math.ceil(n_resamples / blocks)
    pending = []
    for pos, (name, cloud) in enumerate(clouds.items()):
        ref_idx, eval_idx = draw_indices(len(reference), len(cloud), n_resamples, sample_size, seed, pos)
        for start in range(0, n_resamples, block_size):
            stop = min(start + block_size, n_resamples)
            ref = _score_block_task.options(num_cpus=cpus_per_task).remote(
                store, name, ref_idx[start:stop], eval_idx[start:stop], list(metrics), metric_options)
            pending.append((name, start, ref))
    values = {name: np.empty((len(metrics), n_resamples)) for name in clouds}
    for (name, start, ref), block in zip(pending, ray.get([p[2] for p in pending])):
        values[name][:, start:start + block.shape[1]] = block
    raw_rows, summary_rows = [], []
    for name, vals in values.items():
        for i, metric in enumerate(metrics):
            v = vals[i]
            raw_rows.append(pd.DataFrame({"eval_class": name, "metric": metric, "resample": np.arange(n_resamples),
                                          "value": v}))
            summary_rows.append({
                "eval_class": name, "metric": metric, "mean": float(v.mean()), "std": float(v.std(ddof=1)),
                "ci_low": float(np.percentile(v, 2.5)), "ci_high": float(np.percentile(v, 97.5)),
                "n_resamples": n_resamples, "sample_size": sample_size,
            })
    return pd.DataFrame(summary_rows, columns=SUMMARY_COLUMNS), pd.concat(raw_rows, ignore_index=True)

