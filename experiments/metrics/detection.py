"""One-class anomaly detection from embeddings: k-nearest-neighbour scores and their AUROC.

The measure the anomaly-detection literature reports (e.g. Bergman, Cohen & Hoshen, "Deep Nearest Neighbor Anomaly
Detection", 2020, https://arxiv.org/abs/2002.10445): a test image's anomaly score is the mean Euclidean distance to
its ``k`` nearest training-class (normal) embeddings; the AUROC of "normal test images vs images of class c" says how
well that score tells class c from the normal class (1 = perfectly, 0.5 = chance).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
from scipy.stats import bootstrap, rankdata
from sklearn.neighbors import NearestNeighbors

from experiments.metrics.validation import check_clouds

DEFAULT_K = 5


def knn_scores(reference: np.ndarray, queries: np.ndarray, k: int = DEFAULT_K) -> np.ndarray:
    """Mean Euclidean distance of every query to its ``k`` nearest points of ``reference``.

    ``score(q) = (1/k) * sum_{i=1..k} ||q - r_(i)||`` with ``r_(i)`` the i-th nearest reference point.

    Raises:
        ValueError: bad clouds (see ``check_clouds``), or ``k`` not in ``[1, len(reference)]`` (too small a
            reference cloud is reported, never silently clipped).
    """
    reference, queries = check_clouds(reference, queries)
    if not 1 <= k <= len(reference):
        raise ValueError(f"knn k={k} must be between 1 and the reference cloud size ({len(reference)} points)")
    dist, _ = NearestNeighbors(n_neighbors=k).fit(reference).kneighbors(queries)
    return dist.mean(axis=1)


def auroc(normal: np.ndarray, anomalous: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """AUROC of scores where higher means "more anomalous": ``P(s_anomalous > s_normal) + 0.5 P(tie)``.

    Computed from ranks (the Mann–Whitney U statistic divided by ``n * m``), vectorised along ``axis`` so
    ``scipy.stats.bootstrap`` can call it on many resamples at once; equals ``sklearn.metrics.roc_auc_score``.
    """
    normal, anomalous = np.asarray(normal, float), np.asarray(anomalous, float)
    n, m = normal.shape[axis], anomalous.shape[axis]
    if n == 0 or m == 0:
        raise ValueError(f"AUROC needs scores of both groups, got {n} normal and {m} anomalous")
    ranks = rankdata(np.concatenate([normal, anomalous], axis=axis), axis=axis)
    rank_sum = np.take(ranks, np.arange(n, n + m), axis=axis).sum(axis=axis)
    return (rank_sum - m * (m + 1) / 2) / (n * m)


def knn_auroc(
    reference: np.ndarray,
    normal_test: np.ndarray,
    others: Mapping[str, np.ndarray],
    *,
    k: int = DEFAULT_K,
    n_resamples: int = 0,
    seed: int = 0,
    confidence_level: float = 0.95,
) -> dict[str, dict[str, float]]:
    """Per class ``c`` in ``others``, the AUROC of the k-NN score for "``normal_test`` vs class ``c``".

    Args:
        reference: Training-class (normal) training embeddings.
        normal_test: Held-out embeddings of the training class (the negatives).
        others: Embeddings of every other class (the positives), by class name.
        k: Neighbours averaged in the score.
        n_resamples: When > 0, a BCa bootstrap interval (``scipy.stats.bootstrap``, both groups resampled
            independently; the percentile interval where BCa is undefined because every resample gives the same
            AUROC) and the bootstrap standard error are added.
        seed: Seeds the bootstrap.

    Returns:
        ``{class: {"auroc", "std", "ci_low", "ci_high", "median"}}``: ``median`` is the median of the bootstrap
        distribution; std, ci and median are NaN without bootstrap. The BCa interval is not forced to contain the
        median or the AUROC.
    """
    normal_scores = knn_scores(reference, normal_test, k)
    out = {}
    for pos, (name, cloud) in enumerate(others.items()):
        scores = knn_scores(reference, cloud, k)
        row = {
            "auroc": float(auroc(normal_scores, scores)),
            "std": float("nan"),
            "ci_low": float("nan"),
            "ci_high": float("nan"),
            "median": float("nan"),
        }
        if n_resamples > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # degenerate BCa (e.g. AUROC 1 in every resample) handled below
                res = bootstrap(
                    (normal_scores, scores),
                    auroc,
                    n_resamples=n_resamples,
                    vectorized=True,
                    axis=-1,
                    confidence_level=confidence_level,
                    method="BCa",
                    rng=np.random.default_rng([seed, pos]),
                )
            low, high = res.confidence_interval
            if not (np.isfinite(low) and np.isfinite(high)):
                # BCa is undefined when the bootstrap distribution is degenerate: use its percentile interval.
                tail = 100 * (1 - confidence_level) / 2
                low, high = np.percentile(res.bootstrap_distribution, [tail, 100 - tail])
            row.update(
                std=float(res.standard_error),
                ci_low=float(low),
                ci_high=float(high),
                median=float(np.median(res.bootstrap_distribution)),
            )
        out[name] = row
    return out


#: Per-trial detection scores on whole clouds (not bootstrapped pairs of samples), by the name configs use.
DETECTION_SCORES = {"knn_auroc": knn_auroc}


# --------------------------------------------------------------------------------------------------------------------
# Out-of-distribution detection from a classifier-free embedding (Masana et al., BMVC 2018)

#: The detection scores of a trial, by the names configs use.
DETECTION_METRIC_NAMES = ("auroc", "fpr95", "aupr_in", "aupr_out", "nc_accuracy")


def class_means(embeddings: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean embedding of every class: ``(means (C, d), classes (C,))``, classes in sorted order."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    if embeddings.ndim != 2 or len(embeddings) != len(labels) or len(labels) == 0:
        raise ValueError(f"need (n, d) embeddings with n labels, got {embeddings.shape} and {labels.shape}")
    classes = np.unique(labels)
    return np.stack([embeddings[labels == c].mean(axis=0) for c in classes]), classes


def nearest_class_mean(
    train_emb: np.ndarray, train_labels: np.ndarray, test_emb: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, predicted)``: the Euclidean distance of every test embedding to the nearest training-class mean
    (the out-of-distribution score, higher = more anomalous) and that class's label (the nearest-class-mean
    classifier)."""
    means, classes = class_means(train_emb, train_labels)
    test_emb = np.asarray(test_emb, dtype=np.float64)
    if test_emb.ndim != 2 or test_emb.shape[1] != means.shape[1]:
        raise ValueError(f"test embeddings must be (m, {means.shape[1]}), got {test_emb.shape}")
    if not np.isfinite(test_emb).all():
        raise ValueError("test embeddings contain NaN or inf")
    dist = np.sqrt(((test_emb[:, None, :] - means[None, :, :]) ** 2).sum(axis=-1))
    nearest = dist.argmin(axis=1)
    return dist[np.arange(len(dist)), nearest], classes[nearest]


def _check_scores(in_scores: np.ndarray, out_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(in_scores, dtype=np.float64).ravel(), np.asarray(out_scores, dtype=np.float64).ravel()
    if len(a) == 0 or len(b) == 0:
        raise ValueError(
            f"detection metrics need scores of both groups, got {len(a)} in- and {len(b)} out-of-distribution"
        )
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("detection scores contain NaN or inf")
    return a, b


def fpr_at_tpr(in_scores: np.ndarray, out_scores: np.ndarray, tpr: float = 0.95) -> float:
    """False-positive rate at ``tpr`` true-positive rate, in-distribution being the positive class (Hendrycks &
    Gimpel 2017; Liang et al. 2018): the threshold ``t`` is the smallest score such that at least ``tpr`` of the
    in-distribution test images have ``score <= t`` (are accepted); the FPR is the fraction of out-of-distribution
    images also accepted, ``mean(out_scores <= t)`` (ties at ``t`` are accepted)."""
    if not 0 < tpr <= 1:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    a, b = _check_scores(in_scores, out_scores)
    k = int(np.ceil(tpr * len(a) - 1e-12))  # accept at least k in-distribution images
    t = np.sort(a)[max(k, 1) - 1]
    return float(np.mean(b <= t))


def aupr_in(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """AUPR with the in-distribution images as positives: ``average_precision_score`` of the negated scores."""
    from sklearn.metrics import average_precision_score

    a, b = _check_scores(in_scores, out_scores)
    return float(average_precision_score(np.r_[np.ones(len(a)), np.zeros(len(b))], -np.r_[a, b]))


def aupr_out(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """AUPR with the out-of-distribution images as positives: ``average_precision_score`` of the scores."""
    from sklearn.metrics import average_precision_score

    a, b = _check_scores(in_scores, out_scores)
    return float(average_precision_score(np.r_[np.zeros(len(a)), np.ones(len(b))], np.r_[a, b]))


def detection_metrics(in_scores: np.ndarray, out_scores: np.ndarray) -> dict[str, float]:
    """AUROC, FPR at 95 % TPR, AUPR-in and AUPR-out of scores where higher means "more anomalous".

    ``auroc`` = P(out score > in score) + ½ P(tie) = ``roc_auc_score`` with the OoD images as positives;
    ``aupr_in`` = :func:`aupr_in`, ``aupr_out`` = :func:`aupr_out`; ``fpr95`` = :func:`fpr_at_tpr` at 0.95.
    """
    a, b = _check_scores(in_scores, out_scores)
    return {
        "auroc": float(auroc(a, b)),
        "fpr95": fpr_at_tpr(a, b, 0.95),
        "aupr_in": aupr_in(a, b),
        "aupr_out": aupr_out(a, b),
    }


def nc_accuracy(predicted: np.ndarray, true_labels: np.ndarray) -> float:
    """Accuracy of the nearest-class-mean classifier: the fraction of ``predicted == true_labels``.

    Meaningful only with two or more classes: with a single class mean every prediction is that class and the
    accuracy is 1.0 by construction (the sweep logs no ``nc_accuracy`` row for a single-class trial)."""
    predicted, true_labels = np.asarray(predicted), np.asarray(true_labels)
    if predicted.shape != true_labels.shape or predicted.size == 0:
        raise ValueError(f"need as many predictions as labels (> 0), got {predicted.shape} and {true_labels.shape}")
    return float(np.mean(predicted == true_labels))
