"""The trial of the ``anomaly_clustering`` family: patch features of a backbone, α-weighted image embeddings,
agglomerative clustering of one MVTec-layout category's defective test images into anomaly types.

Sohn et al., "Anomaly Clustering: Grouping Images into Coherent Clusters of Anomaly Types", WACV 2023. Nothing is
trained: the backbone's weights come from a local file, from a run of the tracking store (``trial:<key>`` /
``run:<id>``), or are random (tagged ``sweeper.random_init=1``). The category is the trial's ``train_class``.

Logged: the α matrix (``clustering/alpha.npy``), the weighted embeddings (``embeddings/test.parquet``, class name
= defect type), the cluster assignments (``clustering/assignments.parquet``), the NMI/ARI/F1 rows of the tidy score
table (metrics ``nmi``, ``ari``, ``f1_micro``; ``eval_class`` = the category) and α heat-map overlays of a sample of
images per defect type (``plots/alpha.png``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import torch
from mlflow.tracking import MlflowClient
from ray import tune

from experiments.anomaly_clustering import (
    CLUSTERING_DATASETS,
    CLUSTERING_OPTION_DEFAULTS,
    PatchFeatureExtractor,
    anomaly_clustering,
    category_kind,
    clustering_root,
    load_mvtec_category,
)
from experiments.augment import make_augmentation
from experiments.models.family import CLUSTERING, TrialOutputs
from sweeper import tracking
from sweeper.artifacts import embeddings_frame, log_artifacts, log_scores
from sweeper.config import SweepConfig, TrialSpec
from sweeper.scoring import SCORE_COLUMNS, TrialScores
from sweeper.trial_data import resolve_model_options
from sweeper.trial_params import checkpoint_params

log = logging.getLogger(__name__)

#: The family's scores, in the tidy table's ``metric`` column.
CLUSTERING_METRICS = ("nmi", "ari", "f1_micro")


def clustering_options(options: dict[str, Any]) -> dict[str, Any]:
    """The trial's options over the family's defaults; unknown names raise ``ValueError``."""
    unknown = set(options) - set(CLUSTERING_OPTION_DEFAULTS)
    if unknown:
        raise ValueError(
            f"unknown anomaly_clustering option(s) {sorted(unknown)}; valid: {', '.join(CLUSTERING_OPTION_DEFAULTS)}"
        )
    return {**CLUSTERING_OPTION_DEFAULTS, **options}


def run_clustering(
    cfg: SweepConfig,
    spec: TrialSpec,
    client: MlflowClient,
    run_id: str,
    device: torch.device,
    experiment_id: str | None = None,
) -> None:
    """Cluster the defective test images of category ``spec.train_class`` and log everything (see module doc)."""
    o = clustering_options(resolve_model_options(cfg, spec, client, experiment_id))
    tracking.log_params(client, run_id, {f"clustering.{k}": v for k, v in o.items()})
    torch.manual_seed(spec.seed)  # random-init backbones depend on the trial's seed only
    root = clustering_root(cfg.dataset.name, cfg.dataset.root)
    data = load_mvtec_category(root, spec.train_class, cfg.dataset.image_size)
    test_images = _eval_images(cfg, spec, data.test_images)
    extractor = _extractor(cfg, spec, o, client, run_id)
    test_feats = extractor.extract(test_images, batch_size=o["batch_size"], device=device)
    train_feats = (
        extractor.extract(data.train_images, batch_size=o["batch_size"], device=device)
        if o["supervision"] == "supervised"
        else None
    )
    result = anomaly_clustering(
        test_feats,
        data.test_labels,
        supervision=o["supervision"],
        tau=o["tau"],
        train_feats=train_feats,
        train_ratio=o["train_ratio"],
        linkage=o["linkage"],
        seed=spec.seed,
    )
    names = [data.defect_types[i] for i in data.test_labels]
    tracking.log_parquet(
        client,
        run_id,
        embeddings_frame(result.embeddings, data.test_labels.tolist(), names, spec.augmentation),
        "embeddings/test.parquet",
    )
    tracking.log_parquet(
        client,
        run_id,
        pd.DataFrame(
            {
                "path": list(data.test_paths),
                "label": data.test_labels,
                "defect_type": names,
                "cluster": np.asarray(result.assignments),
            }
        ),
        "clustering/assignments.parquet",
    )
    outputs = TrialOutputs(
        {},
        list(data.defect_types),
        {
            "result": result,
            "images": test_images,
            "labels": data.test_labels,
            "names": names,
            "grid": extractor.grid_shape,
        },
    )
    log_artifacts(client, run_id, CLUSTERING.extra_artifacts(outputs))

    _log_clustering_scores(client, run_id, spec, result.scores, len(names))
    tune.report({"done_scoring": 1, **{m: float(result.scores[m]) for m in CLUSTERING_METRICS}})


def _eval_images(cfg: SweepConfig, spec: TrialSpec, images: torch.Tensor) -> torch.Tensor:
    """The category's test images under the trial's augmentation where ``train.augmentation_at`` applies it at
    evaluation (seeded by the trial's seed), else as they are."""
    if spec.augmentation == "none" or cfg.train.augmentation_at not in ("eval", "both"):
        return images
    perturb = make_augmentation(spec.augmentation, **cfg.augmentations.get(spec.augmentation, {}))
    gen = torch.Generator().manual_seed(spec.seed + 7919)
    return (perturb(images.float() / 255, gen).clamp(0, 1) * 255).round().to(torch.uint8)


def _extractor(
    cfg: SweepConfig, spec: TrialSpec, o: dict[str, Any], client: MlflowClient, run_id: str
) -> PatchFeatureExtractor:
    """The trial's patch-feature extractor; its weights' params (SHA-256, tensors loaded) and the random-init and
    category-kind tags logged."""
    extractor = PatchFeatureExtractor(
        o["backbone"],
        o["layers"],
        patchsize=o["patchsize"],
        pretrain_embed_dimension=o["pretrain_embed_dimension"],
        target_embed_dimension=o["target_embed_dimension"],
        weights=o["weights"],
        image_size=cfg.dataset.image_size,
    )
    tracking.log_params(client, run_id, checkpoint_params(extractor))
    tracking.set_tags(
        client,
        run_id,
        {"sweeper.random_init": int(extractor.random_init), "sweeper.category_kind": category_kind(spec.train_class)},
    )
    return extractor


def _log_clustering_scores(
    client: MlflowClient, run_id: str, spec: TrialSpec, scores: dict[str, float], n_images: int
) -> None:
    """The clustering scores as the tidy score table (one ``baseline`` row per metric, no resamples) and summary."""
    table = pd.DataFrame(
        [
            {
                "eval_class": spec.train_class,
                "metric": m,
                "mean": float(scores[m]),
                "std": np.nan,
                "ci_low": np.nan,
                "ci_high": np.nan,
                "n_resamples": 0,
                "sample_size": n_images,
                "p_baseline_below": np.nan,
                "median": np.nan,
                "role": "baseline",
                "full": float(scores[m]),
            }
            for m in CLUSTERING_METRICS
        ]
    )
    summary = {f"score.{m}.{spec.train_class}.mean": float(scores[m]) for m in CLUSTERING_METRICS}
    summary.update({m: float(scores[m]) for m in CLUSTERING_METRICS})
    raw = pd.DataFrame(columns=["eval_class", "metric", "sample_size", "resample", "value"])
    trial_scores = TrialScores(table[SCORE_COLUMNS[3:]], raw, summary)
    log_scores(client, run_id, spec.label, spec.train_class, spec.augmentation, trial_scores)


__all__ = ["CLUSTERING_DATASETS", "CLUSTERING_METRICS", "clustering_options", "run_clustering"]
