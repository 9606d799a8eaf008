"""Bootstrap scoring of embedding clouds as Ray tasks.

For every evaluated class ``c`` and resample ``r``: draw ``sample_size`` points with replacement from the reference
cloud (the training class's training images) and from class ``c``'s test cloud, and evaluate every metric on the pair
(reference sample first, as proj18 passes the training-class sample first to MTopDiv). The draws depend only on
``seed`` and the class's position, not on the number of workers or tasks, and are shared by all trials of a sweep
(common random numbers). The clouds go into Ray's object store once; each task scores a block of resamples of one
class with :func:`experiments.metrics.batched.score_resamples` -- many resamples per kernel, the Hausdorff, summed and
Chamfer distances from one pass over the exact distance blocks, MTopDiv from gathered blocks of precomputed distance
matrices (the reference's own ``d(P, P)`` is computed once per call, in one Ray task, and shared by every class's
tasks through the object store when it fits ``REFERENCE_MATRIX_MAX_ENTRIES``).

Task granularity. A Ray task costs about a millisecond to schedule plus a per-task set-up (fetching the clouds,
building the task's distance blocks); the batched distance metrics then cost microseconds per resample, MTopDiv about
10-15 ms (giotto-ph, 100 + 100 points). So:

* only distance metrics (``hausdorff``, ``euclidean``, ``chamfer``): one task per class -- splitting a class would
  only repeat its set-up -- unless there are fewer classes than workers, then ``ceil(workers / n_classes)`` blocks;
* any per-resample metric (``mtopdiv``, ``mmd``, ``energy``, ``wasserstein``): at least ``workers *
  tasks_per_worker`` tasks in all (default ``tasks_per_worker = 4``), at most ``MAX_RESAMPLES_PER_TASK = 100``
  resamples per task (~1.5 s of MTopDiv: the last task to finish keeps the other workers idle for at most that long)
  and at least ``MIN_RESAMPLES_PER_TASK = 25`` (>= ~0.3 s of MTopDiv, so Ray's ~1 ms per task stays well below 1 %).
  At proj18's defaults (10 classes x 1 000 resamples) that is 100 tasks of 100 resamples, whatever the worker count.

Values do not depend on the number of workers or tasks beyond the exact metrics' ``2**-42`` round-off bound
(MTopDiv: bit for bit).

Device. The trial passes ``device`` (its GPU when it holds one, else the CPU); :func:`sweeper.metric_device.plan_metrics`
makes every metric's device and MTopDiv backend explicit. Metrics that compute on the GPU run here, in the trial's
process (which holds the GPU), all resamples of a class per call; the others go to the CPU Ray tasks above. No task
picks CUDA because it happens to see a GPU.

In process. ``workers=0`` scores the same blocks as ``workers=1`` in the calling process, without Ray (no task, no
worker process, no object store): bit for bit the values of ``workers=1``. A trial does so when its bootstrap is
small (``resources.bootstrap_workers: auto``, see :mod:`sweeper.bootstrap_plan`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import ray
import torch

from experiments.metrics import METRICS
from experiments.metrics.batched import DISTANCE_METRICS, reference_distance_matrix, score_resamples
from sweeper.metric_device import plan_metrics

SUMMARY_COLUMNS = ["eval_class", "metric", "mean", "std", "ci_low", "ci_high", "n_resamples", "sample_size"]

#: Fewest resamples per task when a metric costs per resample (MTopDiv: >= ~0.3 s of work per task).
MIN_RESAMPLES_PER_TASK = 25

#: Most resamples per task when a metric costs per resample (MTopDiv: <= ~1.5 s per task, a short tail).
MAX_RESAMPLES_PER_TASK = 100

#: Largest reference-to-reference distance matrix shared through the object store (2**25 float64 = 256 MiB).
REFERENCE_MATRIX_MAX_ENTRIES = 2**25


def draw_indices(
    n_reference: int, n_eval: int, n_resamples: int, sample_size: int, seed: int, class_position: int
) -> tuple[np.ndarray, np.ndarray]:
    """Resample indices ``(n_resamples, sample_size)`` into the reference and the evaluated cloud, with replacement."""
    rng = np.random.default_rng([seed, class_position])
    ref = rng.integers(0, n_reference, size=(n_resamples, sample_size))
    ev = rng.integers(0, n_eval, size=(n_resamples, sample_size))
    return ref, ev


def score_block(
    reference: np.ndarray,
    cloud: np.ndarray,
    ref_idx: np.ndarray,
    eval_idx: np.ndarray,
    metrics: list[str],
    metric_options: Mapping[str, Mapping[str, Any]],
    reference_distances: np.ndarray | None = None,
) -> np.ndarray:
    """Values ``(len(metrics), len(ref_idx))`` of every metric on every resample of the block, evaluated in batches
    (:func:`experiments.metrics.batched.score_resamples`; equal to calling ``METRICS[name]`` per resample).

    ``reference_distances``: optional ``cdist(reference, reference)``, shared by MTopDiv across classes.
    """
    return score_resamples(
        reference, cloud, ref_idx, eval_idx, metrics, metric_options, reference_distances=reference_distances
    )


@ray.remote
def _score_block_task(
    clouds: dict[str, np.ndarray],
    eval_class: str,
    ref_idx: np.ndarray,
    eval_idx: np.ndarray,
    metrics: list[str],
    metric_options: Mapping[str, Mapping[str, Any]],
    reference_distances: np.ndarray | None = None,
) -> np.ndarray:
    return score_block(
        clouds["__reference__"], clouds[eval_class], ref_idx, eval_idx, metrics, metric_options, reference_distances
    )


@ray.remote
def _reference_distances_task(clouds: dict[str, np.ndarray]) -> np.ndarray:
    return reference_distance_matrix(clouds["__reference__"])


def resamples_per_task(
    n_resamples: int, n_classes: int, metrics: list[str], workers: int, tasks_per_worker: int
) -> int:
    """Resamples per Ray task (see the module docstring for the rule and its reasons)."""
    n_classes = max(n_classes, 1)
    if all(m in DISTANCE_METRICS for m in metrics):
        blocks = max(1, math.ceil(workers / n_classes))
        return math.ceil(n_resamples / blocks)
    blocks = max(1, math.ceil(workers * tasks_per_worker / n_classes))
    size = min(MAX_RESAMPLES_PER_TASK, math.ceil(n_resamples / blocks))
    return min(n_resamples, max(MIN_RESAMPLES_PER_TASK, size))


def bootstrap_scores(
    reference: np.ndarray,
    clouds: Mapping[str, np.ndarray],
    metrics: list[str],
    *,
    n_resamples: int,
    sample_size: int | Sequence[int],
    seed: int,
    workers: int = 1,
    cpus_per_task: float = 1.0,
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
    tasks_per_worker: int = 4,
    device: str | torch.device = "cpu",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Bootstrap every metric between ``reference`` and each cloud in ``clouds`` with Ray tasks.

    Each task evaluates a block of one class's resamples in batches; the block size follows
    :func:`resamples_per_task` (one task per class for distance metrics only; at least ``workers *
    tasks_per_worker`` tasks in all, of ``MIN_RESAMPLES_PER_TASK`` to ``MAX_RESAMPLES_PER_TASK`` resamples, when
    MTopDiv or another per-resample metric is in). ``device``: the trial's device; metrics that compute on a GPU
    run in this process (see the module docstring). ``workers=0``: the blocks of ``workers=1``, scored in this
    process without Ray.

    ``sample_size`` may be a list of cloud sizes: every size is scored from the same clouds in the same batch of
    tasks, each with its own draws (:func:`draw_indices` of the seed, the class's position and the size).

    Returns:
        ``(summary, raw)``: ``summary`` has one row per (eval class, metric, sample size) with the mean, the
        standard deviation (ddof=1) and the 95 % percentile interval of the resampled values; ``raw`` holds every
        value (``eval_class, metric, sample_size, resample, value``).
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid: {', '.join(METRICS)}")
    sizes = [int(sample_size)] if isinstance(sample_size, (int, np.integer)) else [int(n) for n in sample_size]
    biggest = max(sizes)
    too_small = {c: len(x) for c, x in clouds.items() if len(x) < biggest}
    if len(reference) < biggest or too_small:
        raise ValueError(f"sample_size={biggest} exceeds a cloud (reference {len(reference)}, small: {too_small})")
    plan = plan_metrics(metrics, device, metric_options)
    metric_options, in_tasks, on_device = plan.options, list(plan.in_tasks), list(plan.on_device)
    in_process = workers == 0
    store = ray.put({"__reference__": reference, **clouds}) if in_tasks and not in_process else None
    block_size = resamples_per_task(
        n_resamples, len(clouds), in_tasks or list(metrics), max(workers, 1), tasks_per_worker
    )
    reference_distances = None
    n_ref = len(reference)
    # share d(P, P) when MTopDiv would otherwise compute more of it per resample than the whole matrix holds
    share_reference = n_ref * n_ref <= min(
        REFERENCE_MATRIX_MAX_ENTRIES, len(clouds) * n_resamples * sum(n * n for n in sizes)
    )
    if "mtopdiv" in in_tasks and share_reference:
        reference_distances = (
            reference_distance_matrix(reference)
            if in_process
            else _reference_distances_task.options(num_cpus=cpus_per_task).remote(store)
        )
    pending, draws = [], {}
    for pos, (name, cloud), size in ((p, nc, n) for p, nc in enumerate(clouds.items()) for n in sizes):
        ref_idx, eval_idx = draw_indices(len(reference), len(cloud), n_resamples, size, seed, pos)
        draws[name, size] = ref_idx, eval_idx
        for start in range(0, n_resamples if in_tasks else 0, block_size):
            stop = min(start + block_size, n_resamples)
            args = (ref_idx[start:stop], eval_idx[start:stop], in_tasks, metric_options, reference_distances)
            if in_process:
                pending.append(((name, size), start, score_block(reference, cloud, *args)))
            else:
                task = _score_block_task.options(num_cpus=cpus_per_task)
                pending.append(((name, size), start, task.remote(store, name, *args)))
    values = {(name, n): np.empty((len(metrics), n_resamples)) for name in clouds for n in sizes}
    rows = {m: [i for i, x in enumerate(metrics) if x == m] for m in dict.fromkeys(metrics)}
    if on_device:  # on the trial's GPU, in this process, while the CPU tasks run
        local_distances = reference_distance_matrix(reference) if "mtopdiv" in on_device and share_reference else None
        for (name, size), (ref_idx, eval_idx) in draws.items():
            block = score_block(reference, clouds[name], ref_idx, eval_idx, on_device, metric_options, local_distances)
            for k, m in enumerate(on_device):
                values[name, size][rows[m]] = block[k]
    blocks = [p[2] for p in pending] if in_process else ray.get([p[2] for p in pending])
    for (key, start, _), block in zip(pending, blocks, strict=True):
        for k, m in enumerate(in_tasks):
            values[key][rows[m], start : start + block.shape[1]] = block[k]
    raw_rows, summary_rows = [], []
    for (name, size), vals in values.items():
        for i, metric in enumerate(metrics):
            v = vals[i]
            raw_rows.append(
                pd.DataFrame(
                    {
                        "eval_class": name,
                        "metric": metric,
                        "sample_size": size,
                        "resample": np.arange(n_resamples),
                        "value": v,
                    }
                )
            )
            summary_rows.append(
                {
                    "eval_class": name,
                    "metric": metric,
                    "mean": float(v.mean()),
                    "std": float(v.std(ddof=1)),
                    "ci_low": float(np.percentile(v, 2.5)),
                    "ci_high": float(np.percentile(v, 97.5)),
                    "n_resamples": n_resamples,
                    "sample_size": size,
                }
            )
    return pd.DataFrame(summary_rows, columns=SUMMARY_COLUMNS), pd.concat(raw_rows, ignore_index=True)
