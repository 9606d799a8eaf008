"""Sweep configuration: YAML → validated, typed objects → the list of trials.

The schema is pydantic models with ``extra="forbid"`` (a misspelt key is an error, not a silent default). Checks that
need the registries (model, dataset, augmentation and metric names, class names) run in :func:`validate_names`; checks
that need the data (does the dataset exist, is ``sample_size`` at most every class's cloud) in :func:`preflight`. All
raise :class:`ConfigError` with one line that says what is wrong.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

import experiments
from experiments.anomaly_clustering import BACKBONES as PATCH_BACKBONES
from experiments.anomaly_clustering import (
    CLUSTERING_DATASETS,
    CLUSTERING_OPTION_DEFAULTS,
    SUPERVISIONS,
    clustering_root,
    list_categories,
    load_mvtec_category,
)
from experiments.augment import AUGMENTATIONS, VIEW_DEFAULTS, make_augmentation
from experiments.data import DATASETS, DatasetNotFoundError, ImageDataset
from experiments.metrics import METRICS
from experiments.metrics.detection import DETECTION_METRIC_NAMES, DETECTION_SCORES
from experiments.models import MODEL_FAMILIES, MODELS, TRAIN_DEFAULTS, build_model
from experiments.train import TrainSettings

CONFIG_DIR = Path(experiments.__file__).resolve().parent / "configs"


#: Config sections whose change alters a trial's results; a sweep re-run with other values is refused.
RESULT_SECTIONS = ("dataset", "augmentations", "train", "embed", "score", "ood")


def known_scores() -> list[str]:
    """Every score name a config may list in ``score.metrics``."""
    return list(METRICS) + list(DETECTION_SCORES) + list(DETECTION_METRIC_NAMES)


class ConfigError(ValueError):
    """Bad sweep configuration; the message is a single line meant for the user."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetConfig(_Strict):
    """Which images: a registry ``name``, a local ``root`` where needed, the model input size and optional caps."""

    name: str = "digits"
    root: str | None = None
    image_size: int = Field(32, ge=8, le=512)
    classes: list[str] | None = None
    download: bool = False
    max_train_per_class: int | None = Field(None, ge=2)
    max_test_per_class: int | None = Field(None, ge=1)
    subset_seed: int = 0

    @field_validator("classes", mode="before")
    @classmethod
    def _classes_as_str(cls, v: Any) -> Any:
        return [str(c) for c in v] if isinstance(v, list) else v


#: Training settings a ``per_model`` override or a grid param may set.
TRAIN_SETTING_KEYS = ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule")

#: Joins the classes of a training set into one ``train_class`` value (``"0+1+2+3+4"``).
CLASS_SET_SEPARATOR = "+"


class GridConfig(_Strict):
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


class ModelTrainOverrides(_Strict):
    """Optimisation settings for one model only (``train.per_model.<model>``); they win over ``train``'s."""

    epochs: int | None = Field(None, ge=0)
    batch_size: int | None = Field(None, ge=2)
    optimizer: Literal["sgd", "adam"] | None = None
    lr: float | None = Field(None, gt=0)
    momentum: float | None = Field(None, ge=0)
    weight_decay: float | None = Field(None, ge=0)
    schedule: Literal["cosine", "none"] | None = None


class TrainConfig(_Strict):
    """Optimisation; a field left ``null`` takes the model's proj18 default (``experiments.models.TRAIN_DEFAULTS``);
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
        d = {**TRAIN_DEFAULTS[model], "batch_size": self.batch_size}
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


class EmbedConfig(_Strict):
    """The studied representation: backbone (64-d global pool, proj18) or projection-head output. ``dtype``:
    ``float32`` (default) rounds the embeddings to float32; ``float64`` runs the embedding forward pass and the
    normalisation in float64 and logs float64 embeddings (see README, "Exactness")."""

    layer: Literal["backbone", "projection"] = "backbone"
    l2_normalize: bool = True
    batch_size: int = Field(512, ge=1)
    dtype: Literal["float32", "float64"] = "float32"


class ScoreConfig(_Strict):
    """Bootstrap scoring: ``n_resamples`` draws (with replacement) of ``sample_size`` points from both clouds.

    ``seed``: an integer is shared by every trial of the sweep, so trials that differ only in ``grid.seed`` reuse
    the same resample indices (common random numbers: deliberate, it removes resampling noise from comparisons);
    ``per_trial`` derives an independent seed from each trial's key (logged as the run's ``score_seed``).
    ``full_cloud``: the metrics that also get the ``full`` value (the metric on the whole clouds, no resampling);
    ``auto`` is every metric of cost at most ``O(n m d)`` (:mod:`experiments.metrics.full_cloud`)."""

    metrics: list[str] | Literal["all"] = "all"
    n_resamples: int = Field(1000, ge=2)
    sample_size: int | list[int] = 100  # a list scores every size from the same embeddings
    seed: int | Literal["per_trial"] = 0
    knn_k: int = Field(5, ge=1)
    mtopdiv_backend: str = "auto"
    full_cloud: list[str] | Literal["auto"] = "auto"

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
    def metric_names(self) -> list[str]:
        """Cloud metrics (``METRICS``), one-class k-NN scores (``DETECTION_SCORES``) and out-of-distribution
        detection scores (``DETECTION_METRIC_NAMES``) to compute; ``all`` is every one."""
        return known_scores() if self.metrics == "all" else list(self.metrics)


class OODConfig(_Strict):
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


class ResourcesConfig(_Strict):
    """Per-trial resources. ``gpus_per_trial: auto`` is 1 when the cluster has GPUs, else 0; fractions share a GPU.
    ``bootstrap_workers: auto`` scores a small bootstrap in the trial's own process and otherwise reserves one worker
    (``sweeper.bootstrap_plan``); a number reserves that many workers."""

    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float | Literal["auto"] = "auto"
    bootstrap_workers: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    cpus_per_bootstrap_worker: float = Field(1.0, gt=0)
    max_concurrent_trials: int | None = Field(None, ge=1)

    @field_validator("gpus_per_trial")
    @classmethod
    def _gpus_not_negative(cls, v: Any) -> Any:
        if v != "auto" and v < 0:
            raise ValueError("must be >= 0 or 'auto'")
        return v


class TrackingConfig(_Strict):
    """MLflow tracking URI; ``null`` means ``MLFLOW_TRACKING_URI`` or MLflow's own default."""

    uri: str | None = None


class TuneRunConfig(_Strict):
    """Where Tune keeps trial state (``null``: ``~/ray_results``), how often a failed trial is retried, and whether a
    trial worker process runs the next trial of the same resource shape (``reuse_actors``: no new process, imports,
    placement group per trial)."""

    storage_path: str | None = None
    max_failures: int = Field(1, ge=0)
    reuse_actors: bool = True


class SweepConfig(_Strict):
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
        return list(self.dataset.classes or _dataset_classes(self.dataset.name, self.dataset.root))

    @property
    def is_clustering(self) -> bool:
        """Whether the grid's models are of the anomaly-clustering family (MVTec-layout data, no training)."""
        return all(MODEL_FAMILIES.get(m) == "clustering" for m in self.grid.model)

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
        settings["dataset"] = {k: v for k, v in settings["dataset"].items() if k not in ("root", "download")}
        settings["train"] = {k: v for k, v in settings["train"].items() if not k.startswith("checkpoint_every_")}
        return settings

    def trials(self) -> list[TrialSpec]:
        """The grid's product, in Tune's order (model, train_class, augmentation, params, seed)."""
        names = sorted(self.grid.params)
        combos = [
            tuple((n, _freeze(v)) for n, v in zip(names, values, strict=True))
            for values in itertools.product(*(self.grid.params[n] for n in names))
        ]
        return [
            TrialSpec(m, c, a, s, p)
            for m, c, a, p, s in itertools.product(
                self.grid.model, self.train_classes(), self.grid.augmentation, combos, self.grid.seed
            )
        ]


@dataclass(frozen=True)
class TrialSpec:
    """One point of the grid; ``params`` are its model-option axes as sorted ``(name, value)`` pairs."""

    model: str
    train_class: str
    augmentation: str
    seed: int
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def train_classes(self) -> list[str]:
        """The classes the trial trains on (one for the self-supervised models)."""
        return self.train_class.split(CLASS_SET_SEPARATOR)

    @property
    def label(self) -> str:
        """The model as the score tables name it: the model, with its grid params when there are any
        (``odm[mining=True]``), so that variants are told apart in tables and plots."""
        if not self.params:
            return self.model
        return f"{self.model}[{','.join(f'{k}={_param_str(v)}' for k, v in self.params)}]"

    @property
    def key(self) -> str:
        """Deterministic identity, the MLflow tag ``sweeper.trial_key``; param axes come before the seed."""
        params = "".join(f"/{k}={_param_str(v)}" for k, v in self.params)
        return (
            f"model={self.model}/train_class={self.train_class}/augmentation={self.augmentation}{params}"
            f"/seed={self.seed}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (Tune's param space)."""
        return {
            "model": self.model,
            "train_class": self.train_class,
            "augmentation": self.augmentation,
            "seed": self.seed,
            "params": [[k, v] for k, v in self.params],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialSpec:
        return cls(
            d["model"],
            str(d["train_class"]),
            d["augmentation"],
            int(d["seed"]),
            tuple((str(k), _freeze(v)) for k, v in d.get("params", ())),
        )


def _freeze(v: Any) -> Any:
    """Hashable form of a param value (lists become tuples)."""
    return tuple(_freeze(x) for x in v) if isinstance(v, (list, tuple)) else v


def _param_str(v: Any) -> str:
    return ",".join(map(_param_str, v)) if isinstance(v, (list, tuple)) else str(v)


# --------------------------------------------------------------------------------------------------------------------
# Loading, overrides


def parse_overrides(items: list[str]) -> list[tuple[list[str], Any]]:
    """``["a.b=value", ...]`` → ``[(["a", "b"], parsed_value), ...]``; the value is parsed as YAML."""
    parsed = []
    for item in items:
        key, sep, raw = item.partition("=")
        path = key.strip().split(".")
        if not sep or not all(path):
            raise ConfigError(f"bad --set {item!r}: expected KEY.PATH=VALUE, e.g. --set train.epochs=1")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"bad --set {item!r}: value is not valid YAML ({_first_line(exc)})") from None
        parsed.append((path, value))
    return parsed


def apply_overrides(raw: dict[str, Any], items: list[str]) -> dict[str, Any]:
    """A copy of ``raw`` with every ``--set`` applied (intermediate mappings are created as needed)."""
    out = copy.deepcopy(raw)
    for path, value in parse_overrides(items):
        node = out
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"bad --set {'.'.join(path)}: {'.'.join(path[: i + 1])} is not a mapping")
            node = child
        node[path[-1]] = value
    return out


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML in {p}: {_first_line(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p} must hold a mapping of config keys, got {type(raw).__name__}")
    return raw


def parse_config(raw: dict[str, Any]) -> SweepConfig:
    """Validate a raw mapping into a :class:`SweepConfig` and check every registry name."""
    try:
        cfg = SweepConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None
    try:
        validate_names(cfg)
    except ConfigError:
        _raise_if_dataset_missing(cfg)  # a missing dataset is the cause to fix first (its classes are then moot)
        raise
    return cfg


def _raise_if_dataset_missing(cfg: SweepConfig) -> None:
    """``ConfigError`` with the expected path and how to get the data when ``cfg``'s dataset needs a root that is
    unset or lacks the files (a presence check only, no file is read)."""
    entry = DATASETS.get(cfg.dataset.name)
    if entry is None or entry.require is None or cfg.is_clustering or cfg.dataset.download:
        return
    try:
        entry.require(cfg.dataset.root)
    except DatasetNotFoundError as exc:
        raise ConfigError(_first_line(exc)) from None


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> SweepConfig:
    """Read, override and validate a config file (no data is touched; see :func:`preflight`)."""
    return parse_config(apply_overrides(read_yaml(path), overrides or []))


def _choices(kind: str, bad: Any, valid: Any) -> ConfigError:
    return ConfigError(f"unknown {kind} {bad!r}; valid: {', '.join(map(str, valid))}")


def _dataset_classes(name: str, root: str | None) -> list[str]:
    if name in CLUSTERING_DATASETS:
        found = list_categories(root) if name == "mvtec" and root else []
        return found or list(CLUSTERING_DATASETS[name])
    return list(DATASETS[name].class_names)


def validate_names(cfg: SweepConfig) -> None:
    """Every name in ``cfg`` exists in its registry; every class exists in the dataset."""
    for m in cfg.grid.model:
        if m not in MODELS:
            raise _choices("model", m, MODELS)
    clustering = cfg.is_clustering
    registry = CLUSTERING_DATASETS if clustering else DATASETS
    if cfg.dataset.name not in registry:
        what = "anomaly-clustering dataset" if clustering else "dataset"
        raise _choices(what, cfg.dataset.name, registry)
    known = cfg.class_names() if not cfg.dataset.classes else _dataset_classes(cfg.dataset.name, cfg.dataset.root)
    for c in cfg.dataset.classes or []:
        if c not in known:
            raise _choices(f"class in dataset.classes for {cfg.dataset.name}", c, known)
    if cfg.grid.train_classes is not None and cfg.grid.train_class != "all":
        raise ConfigError(
            "give grid.train_class (one class per trial) or grid.train_classes (a set per trial), not both"
        )
    if cfg.grid.train_classes is not None and not all(cfg.grid.train_classes):
        raise ConfigError("grid.train_classes: every class set needs at least one class")
    where = "dataset.classes" if cfg.dataset.classes else f"dataset {cfg.dataset.name!r}"
    for group in cfg.train_classes():
        for c in group.split(CLASS_SET_SEPARATOR):
            if c not in cfg.class_names():
                raise ConfigError(f"unknown train_class {c!r} (not in {where}); valid: {', '.join(cfg.class_names())}")
        if len(set(group.split(CLASS_SET_SEPARATOR))) != len(group.split(CLASS_SET_SEPARATOR)):
            raise ConfigError(f"grid.train_classes: class set {group!r} lists a class twice")
    for c in cfg.ood.seen_classes:
        if c not in cfg.class_names():
            raise ConfigError(
                f"unknown class {c!r} in ood.seen_classes (not in {where}); valid: {', '.join(cfg.class_names())}"
            )
        if any(c in group.split(CLASS_SET_SEPARATOR) for group in cfg.train_classes()):
            raise ConfigError(f"ood.seen_classes: class {c!r} is also a training class")
    for name in [cfg.ood.seen_dataset] * bool(cfg.ood.seen_dataset) + list(cfg.ood.anomaly_datasets):
        if name not in DATASETS:
            raise _choices("dataset in ood", name, DATASETS)
    for section in ("model_options", "per_model"):
        for m in getattr(cfg.train, section):
            if m not in MODELS:
                raise _choices(f"model in train.{section}", m, MODELS)
    for a in list(cfg.grid.augmentation) + list(cfg.augmentations):
        if a not in AUGMENTATIONS:
            raise _choices("augmentation", a, AUGMENTATIONS)
    for a in cfg.grid.augmentation:
        try:
            make_augmentation(a, **cfg.augmentations.get(a, {}))
        except ValueError as exc:
            raise ConfigError(f"augmentations.{a}: {exc}") from None
    known_metrics = known_scores()
    for name in cfg.score.metric_names:
        if name not in known_metrics:
            raise _choices("metric", name, known_metrics)
    if not cfg.score.metric_names:
        raise ConfigError("score.metrics is empty; give at least one of: " + ", ".join(known_metrics))
    if cfg.score.full_cloud != "auto":
        for name in cfg.score.full_cloud:
            if name not in METRICS:
                raise _choices("score.full_cloud metric", name, list(METRICS))
    backends = ("auto", "giotto", "ripser", "ripserplusplus")
    if cfg.score.mtopdiv_backend not in backends:
        raise _choices("score.mtopdiv_backend", cfg.score.mtopdiv_backend, backends)
    unknown_views = set(cfg.train.views) - set(VIEW_DEFAULTS)
    if unknown_views:
        raise ConfigError(f"unknown train.views option(s) {sorted(unknown_views)}; valid: {', '.join(VIEW_DEFAULTS)}")
    for spec in cfg.trials():
        try:
            cfg.settings_for(spec)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"train settings for {spec.key}: {_first_line(exc)}") from None
    _check_models(cfg)
    if clustering:
        if cfg.dataset.name == "mvtec" and not cfg.dataset.root:
            raise ConfigError(
                "dataset 'mvtec' needs dataset.root (the folder holding the MVTec AD categories, e.g. "
                "--set dataset.root=/data/mvtec_ad)"
            )
    elif DATASETS[cfg.dataset.name].needs_root and not cfg.dataset.root:
        raise ConfigError(
            f"dataset {cfg.dataset.name!r} needs dataset.root (e.g. --set dataset.root=/data/{cfg.dataset.name})"
        )
    if len(set(cfg.trials())) != len(cfg.trials()):
        raise ConfigError("the grid lists a value twice; every trial must be unique")


def _weights_ref(options: dict[str, Any]) -> str | None:
    ref = options.get("backbone_weights", options.get("weights"))
    return ref if isinstance(ref, str) and ref.startswith(("trial:", "run:")) else None


def _check_models(cfg: SweepConfig) -> None:
    """Build every model of the grid once (on the CPU, with each combination of grid params) so that unknown or bad
    options fail now; a model that mines seen OoD images needs ``ood.seen_classes``, ``ood.seen_dataset`` or
    ``ood.seen_synthetic``."""
    families = {MODEL_FAMILIES[m] for m in cfg.grid.model}
    if "clustering" in families and len(families) > 1:
        raise ConfigError(
            "anomaly_clustering cannot share a grid with trained models (it reads an MVTec-layout "
            "dataset); give it a config of its own"
        )
    checked: set[str] = set()
    for spec in cfg.trials():
        options = cfg.model_options(spec)
        ident = f"{spec.model}/{sorted(options.items())}"
        if ident in checked:
            continue
        checked.add(ident)
        if MODEL_FAMILIES[spec.model] == "clustering":
            _check_clustering_options(options, spec)
            continue
        if _weights_ref(options):
            continue  # resolved (and checked) against the tracking store by preflight
        try:
            model = build_model(spec.model, (0.5,) * 3, (0.25,) * 3, image_size=cfg.dataset.image_size, **options)
        except (TypeError, ValueError, FileNotFoundError) as exc:
            where = "".join(f" {k}={v}" for k, v in spec.params)
            raise ConfigError(f"model {spec.model!r} options{where or ''}: {_first_line(exc)}") from None
        if getattr(model, "uses_ood", False) and not cfg.ood.has_seen_source:
            raise ConfigError(
                f"model {spec.model!r} mines seen out-of-distribution images: set ood.seen_classes, "
                "ood.seen_dataset or ood.seen_synthetic (or turn mining off)"
            )


def _check_clustering_options(options: dict[str, Any], spec: TrialSpec) -> None:
    where = "".join(f" {k}={v}" for k, v in spec.params)
    unknown = set(options) - set(CLUSTERING_OPTION_DEFAULTS)
    if unknown:
        raise ConfigError(
            f"model 'anomaly_clustering' options{where}: unknown option(s) {sorted(unknown)}; valid: "
            f"{', '.join(CLUSTERING_OPTION_DEFAULTS)}"
        )
    o = {**CLUSTERING_OPTION_DEFAULTS, **options}
    checks = [
        (o["backbone"] in PATCH_BACKBONES, f"backbone must be one of {', '.join(PATCH_BACKBONES)}"),
        (o["supervision"] in SUPERVISIONS, f"supervision must be one of {', '.join(SUPERVISIONS)}"),
        (isinstance(o["tau"], (int, float)) and o["tau"] > 0, "tau must be > 0"),
        (isinstance(o["train_ratio"], (int, float)) and 0 < o["train_ratio"] <= 1, "train_ratio must be in (0, 1]"),
        (
            isinstance(o["patchsize"], int) and o["patchsize"] >= 1 and o["patchsize"] % 2 == 1,
            "patchsize must be a positive odd integer",
        ),
        (
            o["weights"] is None or _weights_ref(o) is not None or Path(str(o["weights"])).expanduser().is_file(),
            f"weights file not found: {o['weights']}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"model 'anomaly_clustering' options{where}: {message}")


def load_dataset(cfg: SweepConfig) -> ImageDataset:
    """The configured dataset with its class caps applied (raises ``DatasetNotFoundError`` if absent)."""
    d = cfg.dataset
    data = DATASETS[d.name].load(d.root, d.image_size, d.download)
    return data.subset(
        max_train_per_class=d.max_train_per_class, max_test_per_class=d.max_test_per_class, seed=d.subset_seed
    )


def preflight(cfg: SweepConfig) -> ImageDataset | None:
    """Load the data once before anything starts: the dataset must exist and every cloud hold ``sample_size``
    points (the reference cloud of each training class and the test cloud of every evaluated class); backbone
    weights named by a run (``trial:…`` / ``run:…``) must exist in the tracking store. Anomaly clustering: every
    category must be readable (the synthetic set is generated here)."""
    _check_weight_refs(cfg)
    if cfg.is_clustering:
        try:
            root = clustering_root(cfg.dataset.name, cfg.dataset.root)
            for category in cfg.train_classes():
                load_mvtec_category(root, category, 8)
        except (DatasetNotFoundError, ValueError) as exc:
            raise ConfigError(_first_line(exc)) from None
        return None
    try:
        data = load_dataset(cfg)
    except DatasetNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    o = cfg.ood
    others = ([(o.seen_dataset, o.seen_root, "ood.seen_root")] if o.seen_dataset else []) + [
        (name, root, f"ood.anomaly_datasets.{name}") for name, root in o.anomaly_datasets.items()
    ]
    for name, root, where in others:
        if DATASETS[name].needs_root and not root:
            raise ConfigError(f"dataset {name!r} in ood needs a root: set {where}")
        try:
            DATASETS[name].load(root, cfg.dataset.image_size, False)
        except DatasetNotFoundError as exc:
            raise ConfigError(str(exc)) from None
    train_sizes, test_sizes = data.class_sizes("train"), data.class_sizes("test")
    for group in cfg.train_classes():
        train_sizes[group] = sum(train_sizes[c] for c in group.split(CLASS_SET_SEPARATOR))
    for c in cfg.train_classes():
        if "knn_auroc" in cfg.score.metric_names and train_sizes[c] < cfg.score.knn_k:
            raise ConfigError(
                f"score.knn_k={cfg.score.knn_k} is larger than the training cloud of class {c!r} "
                f"({train_sizes[c]} images); lower score.knn_k"
            )
    for need in cfg.score.sample_sizes:  # the first listed size that some cloud cannot hold
        _check_size(
            need, {c: train_sizes[c] for c in cfg.train_classes()}, {c: test_sizes[c] for c in cfg.class_names()}
        )
    return data


def _check_size(need: int, train_sizes: dict[str, int], test_sizes: dict[str, int]) -> None:
    for c in train_sizes:
        if train_sizes[c] < need:
            raise ConfigError(
                f"score.sample_size={need} is larger than the training cloud of class {c!r} "
                f"({train_sizes[c]} images); lower score.sample_size"
            )
    for c in test_sizes:
        if test_sizes[c] < need:
            raise ConfigError(
                f"score.sample_size={need} is larger than the test cloud of class {c!r} "
                f"({test_sizes[c]} images); lower score.sample_size"
            )


def _check_weight_refs(cfg: SweepConfig) -> None:
    refs = {ref for spec in cfg.trials() if (ref := _weights_ref(cfg.model_options(spec)))}
    if not refs:
        return
    from mlflow.tracking import MlflowClient

    from sweeper import tracking

    client = MlflowClient(tracking.resolve_tracking_uri(cfg.tracking.uri))
    exp = client.get_experiment_by_name(cfg.experiment)
    for ref in sorted(refs):
        try:
            tracking.resolve_weights_run(client, exp.experiment_id if exp else None, ref)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        got = err.get("input")
        detail = (
            f" (got {got!r})" if err["type"] not in ("missing", "extra_forbidden") and not isinstance(got, dict) else ""
        )
        parts.append(f"{loc or 'config'}: {msg}{detail}")
    more = len(exc.errors()) - 3
    return "invalid config: " + "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def bundled_config(name: str) -> Path:
    """Path of a config shipped in ``experiments/configs`` (e.g. ``"demo"``)."""
    return CONFIG_DIR / f"{name}.yaml"
