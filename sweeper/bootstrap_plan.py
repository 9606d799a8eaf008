"""How many bootstrap workers a trial reserves: ``resources.bootstrap_workers`` (an int, or ``auto``).

``auto`` (the default) scores in the trial's own process (``workers=0`` in :func:`sweeper.bootstrap.bootstrap_scores`:
no Ray task, no worker process, no placement-group bundle) when the estimated bootstrap work is below
``IN_PROCESS_MAX_SECONDS``, and otherwise reserves ``AUTO_WORKERS`` worker bundles as a trial did before ``auto``.
A trial that scores in process holds only its own bundle, so two 1-CPU trials run side by side on 2 cores. The
values are the same either way (bit for bit those of one worker; see :mod:`sweeper.bootstrap`).

The estimate, in CPU seconds:

    sum over evaluated clouds, metrics and cloud sizes n of  n_resamples * COST_AT_100[m] * (n / 100) ** EXPONENT[m]

(``score.sample_size`` may be a list of cloud sizes: every size is scored from the same clouds, so the costs add.)

Why a threshold. Scoring through a Ray worker costs a worker process (its start and imports: 1-2 s on an idle 2-core
machine, ~20 s on a crowded one -- ``benchmarks/trial_overhead.py``, "scoring") and one more reserved CPU per
trial; in process it costs nothing beyond the work itself, while the trial's own CPU would otherwise wait on the
worker. Above 30 CPU-seconds (e.g. proj18's 10 classes x 1 000 MTopDiv resamples, ~110 s) that fixed cost is small,
and a trial keeps the reserved worker it had before ``auto`` (more with a number, for a bootstrap spread over
several workers).

``COST_AT_100`` is the cost of one resample of 100 + 100 points (one metric call, ``BENCHMARKS.md`` "Metric cost
per resample", 2 cores: an upper bound for the batched evaluation); the distance metrics and the distributional ones
grow with the number of point pairs (exponent 2), MTopDiv faster (2.75: 10.9 ms at 100 points, 6.2 s at 1 000).
"""

from __future__ import annotations

from collections.abc import Sequence

from sweeper.config import SweepConfig

#: Below this estimated bootstrap work (CPU seconds) ``auto`` scores in the trial's process.
IN_PROCESS_MAX_SECONDS = 30.0

#: Bootstrap workers ``auto`` reserves above the threshold (the fixed default before ``auto``).
AUTO_WORKERS = 1

#: Seconds per resample of 100 + 100 points, by metric (unknown metrics: the largest).
COST_AT_100 = {
    "hausdorff": 0.16e-3,
    "euclidean": 0.15e-3,
    "euclidean_mean": 0.15e-3,
    "chamfer": 0.17e-3,
    "mmd": 0.88e-3,
    "energy": 0.44e-3,
    "wasserstein": 0.53e-3,
    "mtopdiv": 10.9e-3,
}

#: Growth with the sample size: cost ~ sample_size ** EXPONENT.
EXPONENT = {"mtopdiv": 2.75}


def estimated_bootstrap_seconds(
    n_clouds: int, n_resamples: int, sample_size: int | Sequence[int], metrics: list[str]
) -> float:
    """Estimated CPU seconds of a trial's bootstrap (the formula in the module docstring); ``sample_size`` is one
    cloud size or a list of them."""
    sizes = [sample_size] if isinstance(sample_size, int) else list(sample_size)
    worst = max(COST_AT_100.values())
    per_resample = sum(COST_AT_100.get(m, worst) * (n / 100) ** EXPONENT.get(m, 2.0) for m in metrics for n in sizes)
    return n_clouds * n_resamples * per_resample


def workers_for(
    setting: int | str, n_clouds: int, n_resamples: int, sample_size: int | Sequence[int], metrics: list[str]
) -> int:
    """Bootstrap workers for ``setting`` (a number, or ``auto``) and the described bootstrap: for ``auto``, 0 (score
    in the calling process) when the estimate is below ``IN_PROCESS_MAX_SECONDS``, else ``AUTO_WORKERS``."""
    if setting != "auto":
        return int(setting)
    from experiments.metrics import METRICS

    cloud_metrics = [m for m in metrics if m in METRICS]
    seconds = estimated_bootstrap_seconds(n_clouds, n_resamples, sample_size, cloud_metrics)
    return 0 if seconds < IN_PROCESS_MAX_SECONDS else AUTO_WORKERS


def bootstrap_workers(cfg: SweepConfig) -> int:
    """The trial's bootstrap workers (:func:`workers_for` of ``resources.bootstrap_workers``; the evaluated clouds
    are the dataset's classes plus the pooled training set of a multi-class trial)."""
    if cfg.resources.bootstrap_workers != "auto":
        return int(cfg.resources.bootstrap_workers)
    s = cfg.score
    return workers_for("auto", _n_clouds(cfg), s.n_resamples, s.sample_size, s.metric_names)


def _n_clouds(cfg: SweepConfig) -> int:
    """The clouds a trial scores: the dataset's classes, plus the pooled training set of a multi-class trial."""
    return len(cfg.class_names()) + (len(cfg.grid.train_classes or []) > 0)


def describe(cfg: SweepConfig) -> str:
    """One line for ``sweeper validate``: the estimated bootstrap work of a trial and where it runs."""
    from experiments.metrics import METRICS

    s = cfg.score
    cloud_metrics = [m for m in s.metric_names if m in METRICS]
    seconds = estimated_bootstrap_seconds(_n_clouds(cfg), s.n_resamples, s.sample_size, cloud_metrics)
    workers = bootstrap_workers(cfg)
    where = "in the trial's process" if workers == 0 else f"on {workers} bootstrap worker(s)"
    return f"bootstrap per trial: ~{seconds:.0f} CPU-s estimated, {where}"
