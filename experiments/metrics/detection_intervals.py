"""Uncertainty of the detection scores: bootstrap intervals over the test points, and Wilson's interval for an
accuracy.

* :func:`detection_intervals` -- for AUROC, FPR95, AUPR-in and AUPR-out, a two-sample bootstrap
  (``scipy.stats.bootstrap``, ``paired=False``: the in-distribution and the out-of-distribution scores are resampled
  with replacement, each within its own group, ``n_resamples`` times) and the **percentile** interval of the resample
  distribution, as for the cloud metrics. Percentile rather than BCa: BCa is undefined (NaN) when every resample
  gives the same value, which a perfect detector (AUROC 1) does; the percentile interval is then ``[1, 1]``.
* :func:`wilson_interval` -- the Wilson score interval of a binomial proportion (Wilson, JASA 1927), via
  ``scipy.stats.binomtest(...).proportion_ci(method="wilson")``: for ``k`` successes in ``n`` trials with
  ``z = Φ⁻¹(1 - α/2)``, ``(p̂ + z²/2n ± z √(p̂(1-p̂)/n + z²/4n²)) / (1 + z²/n)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from experiments.metrics.detection import detection_metrics


def detection_intervals(
    in_scores: np.ndarray,
    out_scores: np.ndarray,
    metrics: Sequence[str],
    *,
    n_resamples: int,
    seed: int,
    confidence: float = 0.95,
) -> dict[str, tuple[float, float, float]]:
    """Per metric of ``metrics`` (a subset of ``auroc, fpr95, aupr_in, aupr_out``): ``(std, ci_low, ci_high)`` of
    its bootstrap distribution over the test points (see the module docstring). Same seed, same draws."""
    a = np.asarray(in_scores, dtype=np.float64).ravel()
    b = np.asarray(out_scores, dtype=np.float64).ravel()
    out: dict[str, tuple[float, float, float]] = {}
    for metric in metrics:

        def statistic(x: np.ndarray, y: np.ndarray, metric: str = metric) -> float:
            return detection_metrics(x, y)[metric]

        res = stats.bootstrap(
            (a, b),
            statistic,
            n_resamples=n_resamples,
            paired=False,
            vectorized=False,
            confidence_level=confidence,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
        out[metric] = (
            float(res.standard_error),
            float(res.confidence_interval.low),
            float(res.confidence_interval.high),
        )
    return out


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of ``successes / trials`` at ``confidence`` (see the module docstring)."""
    ci = stats.binomtest(int(successes), int(trials)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)
