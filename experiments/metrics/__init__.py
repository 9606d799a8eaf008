"""Point-cloud comparison metrics: Hausdorff distance, summed Euclidean distance and MTopDiv.

``METRICS`` maps the names configs use to functions ``f(P, Q) -> float`` on two clouds of shape ``(n, d)`` and
``(m, d)``. Every metric validates its input with :func:`check_clouds` and raises ``ValueError`` on an empty cloud,
mismatched dimensions, NaN/inf or a non-2-D array. ``mtopdiv`` is not symmetric: ``P`` is the reference
(training-class) cloud, ``Q`` the evaluated one.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from experiments.metrics.distances import euclidean, hausdorff
from experiments.metrics.cross_barcode import available_backends, cross_distance_matrix, mtopdiv, mtopdiv_subsampled
from experiments.metrics.validation import check_clouds

__all__ = [
    "METRICS",
    "available_backends",
    "check_clouds",
    "cross_distance_matrix",
    "euclidean",
    "hausdorff",
    "mtopdiv",
    "mtopdiv_subsampled",
]

METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "hausdorff": hausdorff,
    "euclidean": euclidean,
    "mtopdiv": mtopdiv,
}
