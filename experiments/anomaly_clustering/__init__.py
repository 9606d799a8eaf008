"""Anomaly clustering (Sohn et al., WACV 2023) with PatchCore-style patch features: data in the MVTec AD layout
(real or synthetic), patch features, α-weighted embeddings and their clustering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments.anomaly_clustering.clustering import (
    SUPERVISIONS,
    ClusteringResult,
    anomaly_clustering,
    cluster,
    clustering_scores,
    f1_micro_matched,
    patch_scores,
    patch_weights,
    weighted_embeddings,
)
from experiments.anomaly_clustering.features import BACKBONES, PatchFeatureExtractor, load_backbone
from experiments.anomaly_clustering.mvtec import (
    MVTEC_CATEGORIES,
    MVTEC_OBJECTS,
    MVTEC_TEXTURES,
    MVTecCategory,
    category_kind,
    list_categories,
    load_mvtec_category,
)
from experiments.anomaly_clustering.plots import draw_alpha
from experiments.anomaly_clustering.synthetic import (
    DEFECT_TYPES,
    SYNTHETIC_CATEGORIES,
    make_synthetic_mvtec,
    synthetic_root,
)

#: Datasets of the anomaly-clustering family and their categories (the trial's ``train_class``).
CLUSTERING_DATASETS: dict[str, tuple[str, ...]] = {
    "synthetic_mvtec": SYNTHETIC_CATEGORIES,
    "mvtec": MVTEC_CATEGORIES,
}

#: Options of ``anomaly_clustering`` (``train.model_options`` / ``grid.params``) and their defaults.
CLUSTERING_OPTION_DEFAULTS: dict[str, Any] = {
    "backbone": "wide_resnet50_2",
    "layers": None,
    "patchsize": 3,
    "pretrain_embed_dimension": 1024,
    "target_embed_dimension": 1024,
    "weights": None,
    "supervision": "supervised",
    "tau": 1.0,
    "train_ratio": 1.0,
    "linkage": "average",
    "batch_size": 16,
}


def clustering_root(dataset: str, root: str | None) -> Path:
    """The MVTec-layout folder of ``dataset``: ``root`` for ``mvtec``; for ``synthetic_mvtec`` the synthetic set,
    generated (once) under ``root`` or the default cache folder."""
    if dataset == "synthetic_mvtec":
        return make_synthetic_mvtec(root)
    if dataset == "mvtec":
        if not root:
            raise ValueError("dataset 'mvtec' needs dataset.root (the folder holding the MVTec AD categories)")
        return Path(root).expanduser()
    raise ValueError(f"unknown anomaly-clustering dataset {dataset!r}; valid: {', '.join(CLUSTERING_DATASETS)}")


__all__ = [
    "BACKBONES",
    "CLUSTERING_DATASETS",
    "CLUSTERING_OPTION_DEFAULTS",
    "DEFECT_TYPES",
    "MVTEC_CATEGORIES",
    "MVTEC_OBJECTS",
    "MVTEC_TEXTURES",
    "SUPERVISIONS",
    "SYNTHETIC_CATEGORIES",
    "ClusteringResult",
    "MVTecCategory",
    "PatchFeatureExtractor",
    "anomaly_clustering",
    "category_kind",
    "cluster",
    "clustering_root",
    "clustering_scores",
    "draw_alpha",
    "f1_micro_matched",
    "list_categories",
    "load_backbone",
    "load_mvtec_category",
    "make_synthetic_mvtec",
    "patch_scores",
    "patch_weights",
    "synthetic_root",
    "weighted_embeddings",
]
