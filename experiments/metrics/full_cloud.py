"""Full-cloud values: a metric on the whole reference cloud against the whole evaluation cloud, with no resampling.

This is what papers usually publish (proj18's Hausdorff table is the Hausdorff distance between the whole training
cloud and each class's whole test cloud), so a user can put the sweep's numbers beside theirs. The bootstrap mean
estimates the metric *between samples of ``sample_size`` points*, which for most metrics differs from the full-cloud
value: a directed Hausdorff or Chamfer distance shrinks as the clouds grow (more chances of a near neighbour), a
summed distance grows with ``n * m``, and the unbiased MMD² is unbiased at every size.

``auto`` (:data:`AUTO`) selects every metric whose cost is at most ``O(n m d)``: hausdorff, euclidean,
euclidean_mean, chamfer and energy (computed in row blocks, bounded memory), mmd (three full squared-distance
matrices: up to :data:`SIZE_LIMITS` points per cloud) and wasserstein (sliced W1 for unequal sizes; the exact
assignment for equal sizes is ``O(n^3)``, so up to the limit). MTopDiv is super-quadratic (persistent homology of
``n + m`` points): it gets a full value only when listed, and only up to its limit. Past a limit the value is NaN
and :func:`full_cloud_values` says why in its ``skipped`` result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

AUTO: tuple[str, ...] = ("hausdorff", "euclidean", "euclidean_mean", "chamfer", "mmd", "energy", "wasserstein")

#: Largest cloud (points per cloud, the larger of the two) for which a full value is computed.
SIZE_LIMITS: dict[str, int] = {"mmd": 10_000, "wasserstein": 5_000, "mtopdiv": 1_000}

#: The exact Wasserstein assignment (equal sizes) is cubic: it stops earlier than the sliced estimate.
EXACT_WASSERSTEIN_LIMIT = 2_000


@dataclass
class FullCloudValues:
    """``values[(metric, eval_class)]``: the full-cloud value (NaN where skipped); ``skipped``: the reasons."""

    values: dict[tuple[str, str], float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def resolve_full_metrics(requested: str | Sequence[str], metrics: Sequence[str]) -> list[str]:
    """The metrics that get a full value: ``auto`` is :data:`AUTO` among ``metrics``; a list is taken as given
    (restricted to ``metrics``, the cloud metrics of the trial)."""
    wanted = AUTO if requested == "auto" else tuple(requested)
    return [m for m in metrics if m in wanted]


def _too_large(metric: str, n: int, m: int) -> str | None:
    """Why ``metric`` gets no full value for clouds of ``n`` and ``m`` points, or None."""
    limit = SIZE_LIMITS.get(metric)
    if metric == "wasserstein" and n == m:
        limit = EXACT_WASSERSTEIN_LIMIT
    if limit is not None and max(n, m) > limit:
        return f"{metric}: no full value for clouds of {n} and {m} points (limit {limit} points per cloud)"
    return None


def full_cloud_values(
    reference: np.ndarray,
    clouds: Mapping[str, np.ndarray],
    metrics: Sequence[str],
    functions: Mapping[str, Callable[..., float]],
    options: Mapping[str, Mapping] | None = None,
) -> FullCloudValues:
    """``metric(reference, cloud)`` on the whole clouds for every metric in ``metrics`` and every evaluation cloud.

    ``functions`` maps metric names to ``f(P, Q, **options[name])``; a metric over its size limit gets NaN and a
    reason in ``skipped`` (see the module docstring).
    """
    options = options or {}
    out = FullCloudValues()
    for metric in metrics:
        for name, cloud in clouds.items():
            reason = _too_large(metric, len(reference), len(cloud))
            if reason:
                out.values[(metric, name)] = float("nan")
                out.skipped.append(f"{reason} (class {name})")
                continue
            out.values[(metric, name)] = float(functions[metric](reference, cloud, **dict(options.get(metric, {}))))
    return out
