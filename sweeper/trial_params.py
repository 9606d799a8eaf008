"""The flat parameters logged on a trial's run (one place: the analysis reads them back by these names)."""

from __future__ import annotations

import json
import logging
from typing import Any

from experiments.data import DATASETS, ImageDataset
from experiments.metrics.detection import DETECTION_METRIC_NAMES
from experiments.models import MODELS
from sweeper.config import SweepConfig, TrialSpec
from sweeper.scoring import trial_score_seed

log = logging.getLogger(__name__)


def trial_params(cfg: SweepConfig, spec: TrialSpec) -> dict[str, Any]:
    """The flat parameters logged on a trial's run."""
    s = cfg.settings_for(spec)
    return {
        "model": spec.model,
        "train_class": spec.train_class,
        "augmentation": spec.augmentation,
        "seed": spec.seed,
        "dataset": cfg.dataset.name,
        "image_size": cfg.dataset.image_size,
        "epochs": s.epochs,
        "batch_size": s.batch_size,
        "optimizer": s.optimizer,
        "lr": s.lr,
        "momentum": s.momentum,
        "weight_decay": s.weight_decay,
        "schedule": s.schedule,
        "augmentation_at": cfg.train.augmentation_at,
        "pipeline": cfg.train.pipeline,
        "amp": cfg.train.amp,
        "channels_last": cfg.train.channels_last,
        "compile": cfg.train.compile,
        "deterministic": cfg.train.deterministic,
        "augmentation_params": json.dumps(cfg.augmentations.get(spec.augmentation, {}), sort_keys=True),
        "model_options": json.dumps(cfg.model_options(spec), sort_keys=True, default=list),
        "family": MODELS[spec.model].family.name,
        "train_classes": ",".join(spec.train_classes),
        **{
            f"param.{k}": json.dumps(v, default=list) if isinstance(v, (list, tuple, dict)) else v
            for k, v in spec.params
        },
        **(
            {"ood": json.dumps(cfg.ood.model_dump(mode="json"), sort_keys=True)}
            if any(m in DETECTION_METRIC_NAMES for m in cfg.score.metric_names)
            else {}
        ),
        "embed_layer": cfg.embed.layer,
        "l2_normalize": cfg.embed.l2_normalize,
        "metrics": ",".join(cfg.score.metric_names),
        "n_resamples": cfg.score.n_resamples,
        "sample_size": json.dumps(cfg.score.sample_size),  # 100 or [25, 50]
        "score_seed": trial_score_seed(cfg.score.seed, spec.key),
        "embed_dtype": cfg.embed.dtype,
        "knn_k": cfg.score.knn_k,
        "mtopdiv_backend": cfg.score.mtopdiv_backend,
        **cfg.score.option_params(),
        "max_train_per_class": cfg.dataset.max_train_per_class,
        "max_test_per_class": cfg.dataset.max_test_per_class,
    }


#: Params of a trial whose model loads backbone weights: the file's SHA-256 and the tensors taken from it (``none`` and
#: 0 for a randomly initialised backbone).
BACKBONE_WEIGHTS_SHA256, BACKBONE_TENSORS_LOADED = "backbone_weights_sha256", "backbone_tensors_loaded"


def checkpoint_params(model: Any) -> dict[str, Any]:
    """The backbone-weights params of a built model (or patch-feature extractor): from its ``checkpoint``
    (:class:`experiments.models.checkpoints.LoadedCheckpoint`), ``none`` / 0 when ``random_init``, else none."""
    info = getattr(model, "checkpoint", None)
    if info is not None:
        return {BACKBONE_WEIGHTS_SHA256: info.sha256, BACKBONE_TENSORS_LOADED: info.tensors_loaded}
    if getattr(model, "random_init", False):
        return {BACKBONE_WEIGHTS_SHA256: "none", BACKBONE_TENSORS_LOADED: 0}
    return {}


IMAGES_RESIZED = "images_resized"


def resize_params(cfg: SweepConfig, data: ImageDataset) -> dict[str, Any]:
    """``images_resized``: how many of the dataset's image files were not ``image_size`` square and were resized
    (:attr:`experiments.data.ImageDataset.n_resized`), for datasets of files of any size (``image_folder``: its
    registry entry has no ``native_size``); nothing for the others. A warning names the count when it is not 0."""
    if DATASETS[cfg.dataset.name].native_size is not None:
        return {}
    if data.n_resized:
        log.warning("%d images of %s were resized to %d px", data.n_resized, cfg.dataset.name, cfg.dataset.image_size)
    return {IMAGES_RESIZED: int(data.n_resized)}
