"""Separation of the baseline from the other classes, from bootstrap resamples of a cloud metric.

In a sweep the baseline is the distance between the training class's training cloud and its own held-out cloud
("normal train vs normal test"); a metric separates the classes when every other class's distance is larger. Given
the resampled values of one metric per evaluated class this module reports: the baseline's rank among all classes by
mean value (1 = nearest), ``P(baseline < class c)`` for each other class (over independent resamples, ties counted
half: the Mann–Whitney probability), and the one-vs-rest AUROC of "baseline resamples vs all other resamples".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from experiments.metrics.detection import auroc


@dataclass(frozen=True)
class Separation:
    """How well the baseline stands apart, for one metric."""

    baseline_rank: int
    p_baseline_below: dict[str, float]
    auroc: float


def separation(values: Mapping[str, np.ndarray], baseline: str) -> Separation:
    """Separation of ``values[baseline]`` from every other class's resampled values.

    Args:
        values: Resampled metric values per evaluated class (1-D arrays).
        baseline: The class whose values are the baseline (the training class).
    """
    if baseline not in values:
        raise ValueError(f"baseline class {baseline!r} not among the evaluated classes {list(values)}")
    if len(values) < 2:
        raise ValueError("separation needs the baseline and at least one other class")
    means = {c: float(np.mean(v)) for c, v in values.items()}
    order = sorted(means, key=lambda c: (means[c], c == baseline))  # ties count against the baseline
    base = np.asarray(values[baseline], float)
    others = {c: np.asarray(v, float) for c, v in values.items() if c != baseline}
    p_below = {c: float(auroc(base, v)) for c, v in others.items()}
    pooled = np.concatenate(list(others.values()))
    return Separation(order.index(baseline) + 1, p_below, float(auroc(base, pooled)))
