"""Point-cloud comparison metrics: Hausdorff distance, summed Euclidean distance, MTopDiv, Chamfer distance, MMD,
energy distance and Wasserstein-1.

:data:`METRIC_SPECS` (:mod:`experiments.metrics.registry`) registers every score a config may name -- cloud
metrics, detection and clustering scores -- with its function, batched form, kind, display label and options.
``METRICS`` (its cloud metrics) maps the names configs use to functions ``f(P, Q) -> float`` on two clouds of shape ``(n, d)`` and
``(m, d)``. Every metric validates its input with :func:`check_clouds` and raises ``ValueError`` on an empty cloud,
mismatched dimensions, NaN/inf or a non-2-D array. ``mtopdiv`` is not symmetric: ``P`` is the reference
(training-class) cloud, ``Q`` the evaluated one.

The distributional metrics (:mod:`experiments.metrics.distributional`) treat each cloud as an empirical
distribution with uniform weights; all four are symmetric:

* ``chamfer`` -- sum of the two directed mean nearest-neighbour distances (non-squared).
* ``mmd`` -- unbiased squared MMD, RBF kernel with median-heuristic bandwidth; needs ``>= 2`` points per cloud and
  can be slightly negative.
* ``energy`` -- energy distance (the square root, as ``scipy.stats.energy_distance``).
* ``wasserstein`` -- exact ``W_1`` when ``len(P) == len(Q)``, the seeded sliced ``W_1`` estimate otherwise (the two
  branches estimate different quantities).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from experiments.metrics.cross_barcode import available_backends, cross_distance_matrix, mtopdiv, mtopdiv_subsampled
from experiments.metrics.distances import euclidean, euclidean_mean, hausdorff
from experiments.metrics.distributional import chamfer, energy, mmd, wasserstein
from experiments.metrics.registry import (
    METRIC_SPECS,
    MetricOption,
    MetricSpec,
    metric_label,
    metrics_of_kind,
)
from experiments.metrics.validation import check_clouds

__all__ = [
    "METRICS",
    "METRIC_SPECS",
    "MetricOption",
    "MetricSpec",
    "available_backends",
    "chamfer",
    "check_clouds",
    "cross_distance_matrix",
    "energy",
    "euclidean",
    "euclidean_mean",
    "hausdorff",
    "metric_label",
    "metrics_of_kind",
    "mmd",
    "mtopdiv",
    "mtopdiv_subsampled",
    "wasserstein",
]

#: Every cloud metric ``f(P, Q) -> float`` by name (the ``cloud`` kind of :data:`METRIC_SPECS`).
METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    name: spec.function for name, spec in METRIC_SPECS.items() if spec.kind == "cloud"
}
