"""Anomaly clustering by weighted average of patch embeddings (Sohn, Yoon, Li, Lee & Pfister, "Anomaly Clustering:
Grouping Images into Coherent Clusters of Anomaly Types", WACV 2023).

Each image is a bag of patch embeddings ``f_1 … f_P``. A patch's anomaly score ``s_p`` is its distance to the
nearest "normal" patch: ``supervised`` -- the nearest patch of a memory bank of normal training images' patches (a
``train_ratio`` of the training images); ``unsupervised`` -- the nearest patch of any *other* test image (defects are
rare and varied, so a defective patch is far from every other image's patches); ``average`` -- no scores. Patch
weights ``alpha = softmax(s / tau)`` over the image's patches (uniform for ``average``); the image embedding is
``sum_p alpha_p f_p``; images are grouped by agglomerative clustering on the Euclidean distance of these embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import AgglomerativeClustering
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

SUPERVISIONS = ("unsupervised", "supervised", "average")

#: Query rows per block of nearest-neighbour distances (bounded memory).
BLOCK_ROWS = 4096


def _nearest(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of every query row to its nearest ``bank`` row, in blocks."""
    out = torch.empty(len(queries), dtype=torch.float64)
    for i in range(0, len(queries), BLOCK_ROWS):
        out[i : i + BLOCK_ROWS] = torch.cdist(queries[i : i + BLOCK_ROWS], bank).amin(dim=1).double()
    return out


def patch_scores(
    test_feats: np.ndarray,
    *,
    supervision: str,
    train_feats: np.ndarray | None = None,
    train_ratio: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """Anomaly score of every patch ``(N, P)`` (see the module doc); zeros for ``average``."""
    if supervision not in SUPERVISIONS:
        raise ValueError(f"supervision must be one of {', '.join(SUPERVISIONS)}, got {supervision!r}")
    feats = torch.as_tensor(np.asarray(test_feats, dtype=np.float32))
    if feats.ndim != 3:
        raise ValueError(f"patch features must be (images, patches, dim), got {tuple(feats.shape)}")
    n, p, d = feats.shape
    if supervision == "average":
        return np.zeros((n, p))
    if supervision == "supervised":
        if train_feats is None or len(train_feats) == 0:
            raise ValueError("supervised patch weights need the normal training images' patch features")
        if not 0.0 < train_ratio <= 1.0:
            raise ValueError(f"train_ratio must be in (0, 1], got {train_ratio}")
        train = np.asarray(train_feats, dtype=np.float32)
        k = max(1, round(train_ratio * len(train)))
        pick = np.sort(np.random.default_rng(seed).choice(len(train), size=k, replace=False))
        bank = torch.from_numpy(train[pick].reshape(-1, d))
        return _nearest(feats.reshape(-1, d), bank).reshape(n, p).numpy()
    if n < 2:
        raise ValueError("unsupervised patch weights need at least 2 test images")
    scores = np.empty((n, p))
    for i in range(n):
        others = torch.cat([feats[:i], feats[i + 1 :]]).reshape(-1, d)
        scores[i] = _nearest(feats[i], others).numpy()
    return scores


def patch_weights(
    test_feats: np.ndarray,
    *,
    supervision: str,
    tau: float,
    train_feats: np.ndarray | None = None,
    train_ratio: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """``alpha (N, P)``: ``softmax(s / tau)`` of the patch scores of every image; rows sum to 1."""
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    s = patch_scores(test_feats, supervision=supervision, train_feats=train_feats, train_ratio=train_ratio, seed=seed)
    z = s / tau
    z -= z.max(axis=1, keepdims=True)
    w = np.exp(z)
    return w / w.sum(axis=1, keepdims=True)


def weighted_embeddings(test_feats: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``(N, D)``: ``sum_p alpha_p f_p`` per image."""
    return np.einsum("np,npd->nd", np.asarray(alpha, dtype=np.float64), np.asarray(test_feats, dtype=np.float64))


def cluster(embeddings: np.ndarray, n_clusters: int, linkage: str = "average") -> np.ndarray:
    """Agglomerative clustering (``sklearn.cluster.AgglomerativeClustering``, Euclidean) into ``n_clusters``."""
    if not 1 <= n_clusters <= len(embeddings):
        raise ValueError(f"n_clusters must be between 1 and the number of images ({len(embeddings)}), got {n_clusters}")
    return AgglomerativeClustering(n_clusters=n_clusters, linkage=linkage).fit_predict(embeddings)


def f1_micro_matched(true_labels: np.ndarray, cluster_labels: np.ndarray) -> float:
    """Micro-averaged F1 after matching clusters to labels one-to-one by the Hungarian algorithm on the
    contingency table (``scipy.optimize.linear_sum_assignment``, maximising the matched images). With one prediction
    per image, micro F1 = precision = recall = (matched images) / (images); unmatched clusters count as errors."""
    table = contingency_matrix(true_labels, cluster_labels)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / len(true_labels))


def clustering_scores(true_labels: np.ndarray, cluster_labels: np.ndarray) -> dict[str, float]:
    """``nmi`` (``normalized_mutual_info_score``, arithmetic mean), ``ari`` (``adjusted_rand_score``), ``f1_micro``
    (:func:`f1_micro_matched`)."""
    true_labels, cluster_labels = np.asarray(true_labels), np.asarray(cluster_labels)
    if true_labels.shape != cluster_labels.shape or true_labels.size == 0:
        raise ValueError(f"need one cluster per labelled image, got {true_labels.shape} and {cluster_labels.shape}")
    return {
        "nmi": float(normalized_mutual_info_score(true_labels, cluster_labels)),
        "ari": float(adjusted_rand_score(true_labels, cluster_labels)),
        "f1_micro": f1_micro_matched(true_labels, cluster_labels),
    }


@dataclass
class ClusteringResult:
    """``alpha (N, P)``, weighted ``embeddings (N, D)``, cluster ``assignments (N,)`` and their ``scores``."""

    alpha: np.ndarray
    embeddings: np.ndarray
    assignments: np.ndarray
    scores: dict[str, float]


def anomaly_clustering(
    test_feats: np.ndarray,
    true_labels: np.ndarray,
    *,
    supervision: str,
    tau: float,
    train_feats: np.ndarray | None = None,
    train_ratio: float = 1.0,
    n_clusters: int | None = None,
    linkage: str = "average",
    seed: int = 0,
) -> ClusteringResult:
    """The whole method: patch weights, weighted embeddings, clustering into ``n_clusters`` (default: the number of
    distinct labels) and the scores against ``true_labels``."""
    alpha = patch_weights(
        test_feats, supervision=supervision, tau=tau, train_feats=train_feats, train_ratio=train_ratio, seed=seed
    )
    emb = weighted_embeddings(test_feats, alpha)
    k = n_clusters or len(np.unique(true_labels))
    assignments = cluster(emb, k, linkage)
    return ClusteringResult(alpha, emb, assignments, clustering_scores(true_labels, assignments))
