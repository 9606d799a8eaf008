"""The metric registry: one :class:`MetricSpec` per score name a config may list.

A spec holds the metric's function, its batched form when it has one (every bootstrap resample at once, see
:mod:`experiments.metrics.batched`), its kind, the label tables and plots show, and the options a config may set in
``score.metric_options.<name>`` (:class:`MetricOption`). Kinds:

* ``cloud`` -- ``f(P, Q) -> float`` on two point clouds, bootstrapped (:data:`experiments.metrics.METRICS`);
* ``detection`` -- a trial-level detection score on whole sets (one-class k-NN AUROC; the nearest-class-mean
  out-of-distribution scores of Masana et al., BMVC 2018);
* ``clustering`` -- agreement of a clustering with the labels (the anomaly-clustering family).

Adding a metric is one module with its function plus one :data:`METRIC_SPECS` entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from experiments.metrics.batched import chamfer_batch, euclidean_batch, hausdorff_batch, mtopdiv_batch
from experiments.metrics.cross_barcode import mtopdiv
from experiments.metrics.detection import aupr_in, aupr_out, auroc, fpr_at_tpr, knn_auroc, nc_accuracy
from experiments.metrics.distances import euclidean, euclidean_mean, hausdorff
from experiments.metrics.distributional import chamfer, energy, mmd, wasserstein
from experiments.metrics.mmd_resampled import mmd_resamples

MetricKind = Literal["cloud", "detection", "clustering"]

#: The kinds a spec may have.
KINDS: tuple[str, ...] = ("cloud", "detection", "clustering")


@dataclass(frozen=True)
class MetricOption:
    """One option of a metric: its ``default`` and the values it takes -- one of ``choices``, or any value for which
    ``check`` is true (``rule`` says which in words)."""

    default: Any
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], bool] | None = None
    rule: str = ""

    def validate(self, name: str, value: Any) -> None:
        """``ValueError`` (one line) unless ``value`` is an accepted value of option ``name``."""
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(map(str, self.choices))}")
        if self.check is not None and not self.check(value):
            raise ValueError(f"{name} must be {self.rule}, not {value!r}")


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric: ``function``, optional ``batched`` form ``g(reference, cloud, ref_idx, eval_idx,
    **options) -> (n_resamples,)``, ``kind`` (see the module docstring), display ``label`` and ``options``."""

    function: Callable[..., Any]
    kind: MetricKind
    label: str
    batched: Callable[..., np.ndarray] | None = None
    options: Mapping[str, MetricOption] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown metric kind {self.kind!r}; valid: {', '.join(KINDS)}")

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` as a dict when every key is an option of this metric and every value accepted by it; else
        ``ValueError`` with one line naming the first problem."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            valid = ", ".join(self.options) if self.options else "none (this metric takes no options)"
            raise ValueError(f"unknown option(s) {unknown}; valid: {valid}")
        for key, value in options.items():
            self.options[key].validate(key, value)
        return dict(options)


def _positive_or_none(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf)


def _int_at_least(low: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def f1_micro(true_labels: np.ndarray, cluster_labels: np.ndarray) -> float:
    """Micro F1 after the one-to-one Hungarian matching of clusters to labels
    (:func:`experiments.anomaly_clustering.clustering.f1_micro_matched`, imported on first use)."""
    from experiments.anomaly_clustering.clustering import f1_micro_matched

    return f1_micro_matched(true_labels, cluster_labels)


#: Every metric by the name configs use, cloud metrics first, then the detection and the clustering scores.
METRIC_SPECS: dict[str, MetricSpec] = {
    "hausdorff": MetricSpec(hausdorff, "cloud", "Hausdorff distance", batched=hausdorff_batch),
    "euclidean": MetricSpec(euclidean, "cloud", "sum of point-to-point Euclidean distances", batched=euclidean_batch),
    "euclidean_mean": MetricSpec(euclidean_mean, "cloud", "mean point-to-point Euclidean distance"),
    "mtopdiv": MetricSpec(
        mtopdiv,
        "cloud",
        "MTopDiv",
        batched=mtopdiv_batch,
        options={"backend": MetricOption("auto", choices=("auto", "giotto", "ripser", "ripserplusplus"))},
    ),
    "chamfer": MetricSpec(chamfer, "cloud", "Chamfer distance", batched=chamfer_batch),
    "mmd": MetricSpec(
        mmd,
        "cloud",
        "MMD² (RBF kernel, unbiased)",
        batched=mmd_resamples,
        options={"bandwidth": MetricOption(None, check=_positive_or_none, rule="a number > 0 or null (median)")},
    ),
    "energy": MetricSpec(energy, "cloud", "energy distance"),
    "wasserstein": MetricSpec(
        wasserstein,
        "cloud",
        "Wasserstein-1 distance",
        options={
            "n_projections": MetricOption(200, check=_int_at_least(1), rule="an integer >= 1"),
            "seed": MetricOption(0, check=_int_at_least(0), rule="an integer >= 0"),
        },
    ),
    "knn_auroc": MetricSpec(knn_auroc, "detection", "one-class k-NN AUROC"),
    "auroc": MetricSpec(auroc, "detection", "OoD detection AUROC (distance to the nearest class mean)"),
    "fpr95": MetricSpec(fpr_at_tpr, "detection", "false-positive rate at 95 % true-positive rate"),
    "aupr_in": MetricSpec(aupr_in, "detection", "AUPR, in-distribution as positives"),
    "aupr_out": MetricSpec(aupr_out, "detection", "AUPR, out-of-distribution as positives"),
    "nc_accuracy": MetricSpec(nc_accuracy, "detection", "nearest-class-mean accuracy"),
    "nmi": MetricSpec(normalized_mutual_info_score, "clustering", "normalised mutual information"),
    "ari": MetricSpec(adjusted_rand_score, "clustering", "adjusted Rand index"),
    "f1_micro": MetricSpec(f1_micro, "clustering", "micro F1 (Hungarian-matched clusters)"),
}


def metrics_of_kind(*kinds: str) -> list[str]:
    """The registered names of the given kinds, in registry order."""
    return [name for name, spec in METRIC_SPECS.items() if spec.kind in kinds]


def metric_label(name: str) -> str:
    """The display label of metric ``name`` (the name itself when it is not registered)."""
    spec = METRIC_SPECS.get(name)
    return spec.label if spec is not None else name
