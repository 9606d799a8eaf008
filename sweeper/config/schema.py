"""Sweep configuration schema: the pydantic models of every config section.

The schema is pydantic models with ``extra="forbid"`` (a misspelt key is an error, not a silent default). Checks that
need the registries (model, dataset, augmentation and metric names, class names) run in :func:`sweeper.config.validate.validate_names`;
checks that need the data (does the dataset exist, is ``sample_size`` at most every class's cloud) in
:func:`sweeper.config.preflight.preflight`. All raise :class:`ConfigError` with one line that says what is wrong.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

import experiments
from experiments.metrics import metrics_of_kind
from experiments.models import MODELS
from experiments.train import TrainSettings
from sweeper.config.grid import CLASS_SET_SEPARATOR, TRAIN_SETTING_KEYS, TrialSpec, dataset_classes, expand_grid
from sweeper.config.runtime import ResourcesConfig, StrictModel, TrackingConfig, TuneRunConfig

log = logging.getLogger(__name__)

#: The warning for a config that still sets ``score.mtopdiv_backend``.
DEPRECATED_BACKEND = (
    "score.mtopdiv_backend is deprecated; write score.metric_options: {mtopdiv: {backend: %s}} (read as that now)"
)

CONFIG_DIR = Path(experiments.__file__).resolve().parent / "configs"


#: Config sections whose change alters a trial's results; a sweep re-run with other values is refused.
RESULT_SECTIONS = ("dataset", "augmentations", "train", "embed", "score", "ood")
#: ``dataset`` keys that say where or how the data is read, not what it is (left out of :meth:`SweepConfig.result_settings`).
NO_RESULT_DATASET_KEYS = ("root", "download", "cache_dir", "decode_workers")


def known_scores() -> list[str]:
    """Every score name a config may list in ``score.metrics``: the cloud metrics (``METRICS``), then the detection
    scores (``knn_auroc`` and ``DETECTION_METRIC_NAMES``) of ``experiments.metrics.METRIC_SPECS``."""
    return metrics_of_kind("cloud", "detection")


class ConfigError(ValueError):
    """Bad sweep configuration; the message is a single line meant for the user."""


class DatasetConfig(StrictModel):
    """Which images: a registry ``name``, a local ``root`` where needed, the model input size and optional caps.

    ``image_folder`` only: ``cache_dir``, the folder of its decoded-image cache (``null``:
    ``$XDG_CACHE_HOME/embedding-sweeper/image_folder``, ``~/.cache/...`` without it), and ``decode_workers``, the
    processes that decode on a cache miss (``null``: the usable cores). Neither changes results."""

    name: str = "digits"
    root: str | None = None
    image_size: int = Field(32, ge=8, le=512)
    classes: list[str] | None = None
    download: bool = False
    max_train_per_class: int | None = Field(None, ge=2)
    max_test_per_class: int | None = Field(None, ge=1)
    subset_seed: int = 0
    cache_dir: str | None = None
    decode_workers: int | None = Field(None, ge=1)

    def load_kwargs(self, options: tuple[str, ...]) -> dict[str, Any]:
        """The fields named by a registry entry's ``load_options``, as keyword arguments of its loader."""
        return {k: getattr(self, k) for k in options}

    @field_validator("classes", mode="before")
    @classmethod
    def _classes_as_str(cls, v: Any) -> Any:
        return [str(c) for c in v] if isinstance(v, list) else v


class GridConfig(StrictModel):
    """The sweep axes; Tune runs one trial per element of their product.

    ``train_class`` trains on one class per trial (the self-supervised models); ``train_classes`` on a *set* of
    classes per trial (models that learn several classes: a flat list is one set, a list of lists several). A trial's
    ``train_class`` is then the set joined with ``+``. ``params`` are model-option axes (``{latent_dim: [2, 16]}``),
    merged over ``train.model_options`` for every model of the grid.
    """

    model: list[str] = Field(min_length=1)
    train_class: list[str] | Literal["all"] = "all"
    train_classes: list[list[str]] | None = None
    augmentation: list[str] = Field(default_factory=lambda: ["none"], min_length=1)
    params: dict[str, list[Any]] = Field(default_factory=dict)
    seed: list[int] = Field(default_factory=lambda: [0], min_length=1)

    @field_validator("model", "augmentation", "seed", "train_class", mode="before")
    @classmethod
    def _scalar_to_list(cls, v: Any) -> Any:
        if isinstance(v, (str, int)) and v != "all":
            v = [v]
        return v

    @field_validator("train_class", mode="before")
    @classmethod
    def _class_as_str(cls, v: Any) -> Any:
        return [str(c) for c in v] if isinstance(v, list) else v

    @field_validator("train_classes", mode="before")
    @classmethod
    def _class_sets(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        if v and not any(isinstance(c, list) for c in v):
            v = [v]  # a flat list is one set
        return [[str(c) for c in group] if isinstance(group, list) else group for group in v]

    @field_validator("params", mode="before")
    @classmethod
    def _param_lists(cls, v: Any) -> Any:
        return {k: x if isinstance(x, list) else [x] for k, x in v.items()} if isinstance(v, dict) else v


class ModelTrainOverrides(StrictModel):
    """Optimisation settings for one model only (``train.per_model.<model>``); they win over ``train``'s."""

    epochs: int | None = Field(None, ge=0)
    batch_size: int | None = Field(None, ge=2)
    optimizer: Literal["sgd", "adam"] | None = None
    lr: float | None = Field(None, gt=0)
    momentum: float | None = Field(None, ge=0)
    weight_decay: float | None = Field(None, ge=0)
    schedule: Literal["cosine", "none"] | None = None


class TrainConfig(StrictModel):
    """Optimisation; a field left ``null`` takes the model's proj18 default (``experiments.models.MODELS[model].train_defaults``);
    ``per_model`` sets fields for one model (e.g. a learning rate for Barlow Twins only).

    Input pipeline of the self-supervised models (``experiments.train.train``): ``pipeline`` ``batched`` (views of
    whole batches on the device, the default) or ``per_image`` (proj18's PIL views in a DataLoader with
    ``num_workers`` processes); ``amp`` bf16 autocast (``null``: on with a GPU), ``channels_last`` (``null``: on for
    the batched pipeline), ``compile`` (``torch.compile``). ``flip``: random horizontal flips of the label-supervised
    models' training batches. ``deterministic``: deterministic CUDA kernels, no cuDNN autotuning, TF32 off for
    training and embedding (``experiments.precision.deterministic_mode``; slower on a GPU, no effect on a CPU).
    ``checkpoint_every_epochs`` / ``checkpoint_every_seconds``: a trial persists a checkpoint when either many epochs
    or seconds passed since its last one, and always after its last epoch (``null`` switches a rule off; see
    ``sweeper.checkpointing``); they do not affect results."""

    epochs: int | None = Field(None, ge=0)
    batch_size: int = Field(256, ge=2)
    optimizer: Literal["sgd", "adam"] | None = None
    lr: float | None = Field(None, gt=0)
    momentum: float | None = Field(None, ge=0)
    weight_decay: float | None = Field(None, ge=0)
    schedule: Literal["cosine", "none"] | None = None
    augmentation_at: Literal["eval", "train", "both"] = "both"
    views: dict[str, Any] = Field(default_factory=dict)
    pipeline: Literal["batched", "per_image"] = "batched"
    amp: bool | None = None
    channels_last: bool | None = None
    compile: bool = False
    num_workers: int = Field(0, ge=0)
    flip: bool = False
    deterministic: bool = False
    checkpoint_every_epochs: int | None = Field(None, ge=1)
    checkpoint_every_seconds: float | None = Field(30.0, ge=0)
    model_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    per_model: dict[str, ModelTrainOverrides] = Field(default_factory=dict)

    def settings_for(self, model: str) -> TrainSettings:
        """Concrete settings of ``model``: ``per_model`` wins over the explicit fields, which win over the model's
        proj18 defaults."""
        d = {**MODELS[model].train_defaults, "batch_size": self.batch_size}
        override = self.per_model.get(model)
        for key in TRAIN_SETTING_KEYS:
            value = (
                getattr(override, key)
                if override is not None and getattr(override, key) is not None
                else getattr(self, key)
            )
            if value is not None:
                d[key] = value
        return TrainSettings(**d)


class EmbedConfig(StrictModel):
    """The studied representation: backbone (64-d global pool, proj18) or projection-head output. ``dtype``:
    ``float32`` (default) rounds the embeddings to float32; ``float64`` runs the embedding forward pass and the
    normalisation in float64 and logs float64 embeddings (see README, "Exactness")."""

    layer: Literal["backbone", "projection"] = "backbone"
    l2_normalize: bool = True
    batch_size: int = Field(512, ge=1)
    dtype: Literal["float32", "float64"] = "float32"


class ScoreConfig(StrictModel):
    """Bootstrap scoring: ``n_resamples`` draws (with replacement) of ``sample_size`` points from both clouds.

    ``seed``: an integer is shared by every trial of the sweep, so trials that differ only in ``grid.seed`` reuse
    the same resample indices (common random numbers: deliberate, it removes resampling noise from comparisons);
    ``per_trial`` derives an independent seed from each trial's key (logged as the run's ``score_seed``).
    ``full_cloud``: the metrics that also get the ``full`` value (the metric on the whole clouds, no resampling);
    ``auto`` is every metric of cost at most ``O(n m d)`` (:mod:`experiments.metrics.full_cloud`).
    ``metric_options``: options per metric, checked against ``experiments.metrics.METRIC_SPECS``
    (``{mtopdiv: {backend: giotto}}``); the deprecated ``mtopdiv_backend`` is still read (a warning) as
    ``metric_options.mtopdiv.backend``."""

    metrics: list[str] | Literal["all"] = "all"
    n_resamples: int = Field(1000, ge=2)
    sample_size: int | list[int] = 100  # a list scores every size from the same embeddings
    seed: int | Literal["per_trial"] = 0
    knn_k: int = Field(5, ge=1)
    deprecated_mtopdiv_backend: str | None = Field(None, alias="mtopdiv_backend", exclude=True)
    full_cloud: list[str] | Literal["auto"] = "auto"
    metric_options: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _map_deprecated_backend(cls, v: Any) -> Any:
        """``mtopdiv_backend: X`` → a warning and ``metric_options.mtopdiv.backend: X`` (unless that is set too:
        :func:`sweeper.config.validate.check_metric_options` then refuses a conflict)."""
        if not isinstance(v, dict) or v.get("mtopdiv_backend") is None:
            return v
        log.warning(DEPRECATED_BACKEND, v["mtopdiv_backend"])
        options = v.get("metric_options") or {}
        own = options.get("mtopdiv") if isinstance(options, dict) else None
        if isinstance(options, dict) and isinstance(own or {}, dict) and "backend" not in (own or {}):
            v = {**v, "metric_options": {**options, "mtopdiv": {**(own or {}), "backend": v["mtopdiv_backend"]}}}
        return v

    @field_validator("sample_size")
    @classmethod
    def _sizes(cls, v: int | list[int]) -> int | list[int]:
        sizes = [v] if isinstance(v, int) else v
        if not sizes or any(n < 2 for n in sizes) or len(set(sizes)) != len(sizes):
            raise ValueError(f"score.sample_size must be an integer >= 2 or a list of distinct ones, not {v!r}")
        return v

    @property
    def sample_sizes(self) -> list[int]:
        """``sample_size`` as a list (one element when a single size is configured)."""
        return [self.sample_size] if isinstance(self.sample_size, int) else list(self.sample_size)

    @property
    def mtopdiv_backend(self) -> str:
        """The configured MTopDiv backend (``metric_options.mtopdiv.backend``, ``auto`` when unset)."""
        return self.metric_options.get("mtopdiv", {}).get("backend", "auto")

    def option_params(self) -> dict[str, str]:
        """The run params that record ``metric_options`` beside the ``mtopdiv_backend`` param: nothing when the
        MTopDiv backend is all they set (runs then log what they always did), else ``metric_options`` as sorted
        JSON without the backend (read back by :func:`sweeper.scoring.metric_options_from_params`)."""
        rest = {
            m: {k: v for k, v in o.items() if (m, k) != ("mtopdiv", "backend")} for m, o in self.metric_options.items()
        }
        rest = {m: o for m, o in rest.items() if o}
        return {"metric_options": json.dumps(rest, sort_keys=True)} if rest else {}

    @property
    def metric_names(self) -> list[str]:
        """Cloud metrics (``METRICS``), one-class k-NN scores (``DETECTION_SCORES``) and out-of-distribution
        detection scores (``DETECTION_METRIC_NAMES``) to compute; ``all`` is every one."""
        return known_scores() if self.metrics == "all" else list(self.metrics)


class OODConfig(StrictModel):
    """Out-of-distribution data of the detection scores (``auroc``, ``fpr95``, ``aupr_in``, ``aupr_out``,
    ``nc_accuracy``) and of models that mine seen OoD images (ODM).

    Novelty: the held-out classes of the dataset (neither trained on nor seen). Anomaly: ``noise_images`` Gaussian
    noise images generated per trial (pixel mean and std ``noise_mean`` / ``noise_std``; ``null``: those of the
    training images, so that only the structure differs), and the test images of every dataset in
    ``anomaly_datasets`` (name → root).
    Seen OoD for mining: the union of the training images of ``seen_classes`` of the dataset, those of
    ``seen_dataset`` (at most ``max_seen_images`` of the two, drawn with ``dataset.subset_seed``), and
    ``seen_synthetic`` synthetic outliers derived from the trial's own training images
    (:func:`experiments.data.noise.synthetic_outlier_images`: pixel-shuffled, inverted, heavily blurred and
    constant-grey images; none of them Gaussian noise).
    """

    seen_classes: list[str] = Field(default_factory=list)
    seen_dataset: str | None = None
    seen_root: str | None = None
    max_seen_images: int | None = Field(None, ge=1)
    seen_synthetic: int = Field(0, ge=0)
    noise_images: int = Field(500, ge=0)
    noise_mean: float | None = None
    noise_std: float | None = Field(None, ge=0)
    anomaly_datasets: dict[str, str | None] = Field(default_factory=dict)
    max_anomaly_images: int = Field(1000, ge=1)

    @property
    def has_seen_source(self) -> bool:
        """Whether any seen-OoD source (classes, another dataset or synthetic outliers) is configured."""
        return bool(self.seen_classes or self.seen_dataset or self.seen_synthetic)

    @field_validator("seen_classes", mode="before")
    @classmethod
    def _classes_as_str(cls, v: Any) -> Any:
        if isinstance(v, (str, int)):
            v = [v]
        return [str(c) for c in v] if isinstance(v, list) else v


class SweepConfig(StrictModel):
    """A whole sweep, as written in ``experiments/configs/*.yaml``."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    experiment: str = Field(min_length=1)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    grid: GridConfig
    augmentations: dict[str, dict[str, Any]] = Field(default_factory=dict)
    train: TrainConfig = Field(default_factory=TrainConfig)
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    ood: OODConfig = Field(default_factory=OODConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    tune: TuneRunConfig = Field(default_factory=TuneRunConfig)

    def class_names(self) -> list[str]:
        """The evaluated classes: ``dataset.classes`` or all of the dataset's (for the anomaly-clustering datasets:
        the categories; those found under ``dataset.root`` for ``mvtec``)."""
        return list(self.dataset.classes or dataset_classes(self.dataset.name, self.dataset.root))

    @property
    def is_clustering(self) -> bool:
        """Whether the grid's models are of the anomaly-clustering family (MVTec-layout data, no training)."""
        return all(is_clustering_model(m) for m in self.grid.model)

    def train_classes(self) -> list[str]:
        """The grid's ``train_class`` values: single classes, or class sets joined with ``+``."""
        if self.grid.train_classes is not None:
            return [CLASS_SET_SEPARATOR.join(group) for group in self.grid.train_classes]
        return self.class_names() if self.grid.train_class == "all" else list(self.grid.train_class)

    def model_options(self, spec: TrialSpec) -> dict[str, Any]:
        """The options a trial's model is built with: ``train.model_options`` of its model, then its grid params
        (except those naming a training setting, see :meth:`settings_for`)."""
        params = {k: v for k, v in spec.params if k not in TRAIN_SETTING_KEYS}
        return {**self.train.model_options.get(spec.model, {}), **params}

    def settings_for(self, spec: TrialSpec) -> TrainSettings:
        """A trial's optimisation settings: ``train.settings_for(model)`` with grid params that name a training
        setting (``batch_size``, ``lr``, ``epochs``…) on top."""
        base = self.train.settings_for(spec.model)
        override = {k: v for k, v in spec.params if k in TRAIN_SETTING_KEYS}
        return dataclasses.replace(base, **override) if override else base

    def result_settings(self) -> dict[str, Any]:
        """The part of the config that determines a trial's results (not the grid, resources, paths or URIs)."""
        dumped = self.model_dump(mode="json")
        settings = {k: dumped[k] for k in RESULT_SECTIONS}
        settings["dataset"] = {k: v for k, v in settings["dataset"].items() if k not in NO_RESULT_DATASET_KEYS}
        settings["train"] = {k: v for k, v in settings["train"].items() if not k.startswith("checkpoint_every_")}
        settings["score"] = _score_settings(settings["score"])
        return settings

    def trials(self) -> list[TrialSpec]:
        """The grid's product, in Tune's order (model, train_class, augmentation, params, seed)."""
        g = self.grid
        return expand_grid(g.model, self.train_classes(), g.augmentation, g.params, g.seed)


def _score_settings(score: dict[str, Any]) -> dict[str, Any]:
    """The dumped ``score`` section as sweeps stored it before ``metric_options``: the MTopDiv backend under
    ``mtopdiv_backend``, ``metric_options`` only when it sets something else (so a sweep resumes unchanged)."""
    options = {m: dict(o) for m, o in score.pop("metric_options").items()}
    score["mtopdiv_backend"] = options.get("mtopdiv", {}).pop("backend", "auto")
    rest = {m: o for m, o in options.items() if o}
    return {**score, "metric_options": rest} if rest else score


def is_clustering_model(model: str) -> bool:
    """Whether ``model`` is of the anomaly-clustering family (the one place the config asks a model's family)."""
    return model in MODELS and MODELS[model].family.reads_categories


def first_line(exc: Exception) -> str:
    """``exc``'s message on one line (whitespace runs, newlines included, become one space)."""
    return " ".join(str(exc).split())
