"""Sweep configuration: YAML → validated, typed objects → the list of trials.

The schema is pydantic models with ``extra="forbid"`` (a misspelt key is an error, not a silent default). Checks that
need the registries (model, dataset, augmentation and metric names, class names) run in :func:`validate_names`; checks
that need the data (does the dataset exist, is ``sample_size`` at most every class's cloud) in :func:`preflight`. All
raise :class:`ConfigError` with one line that says what is wrong.
"""

from __future__ import annotations

import copy
import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

import experiments
from experiments.augment import AUGMENTATIONS, VIEW_DEFAULTS, make_augmentation
from experiments.data import DATASETS, DatasetNotFoundError, ImageDataset
from experiments.metrics import METRICS
from experiments.metrics.detection import DETECTION_SCORES
from experiments.models import MODELS, TRAIN_DEFAULTS
from experiments.train import TrainSettings

CONFIG_DIR = Path(experiments.__file__).resolve().parent / "configs"


#: Config sections whose change alters a trial's results; a sweep re-run with other values is refused.
RESULT_SECTIONS = ("dataset", "augmentations", "train", "embed", "score")


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


class GridConfig(_Strict):
    """The sweep axes; Tune runs one trial per element of their product."""

    model: list[str] = Field(min_length=1)
    train_class: list[str] | Literal["all"] = "all"
    augmentation: list[str] = Field(default_factory=lambda: ["none"], min_length=1)
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
    ``per_model`` sets fields for one model (e.g. a learning rate for Barlow Twins only)."""

    epochs: int | None = Field(None, ge=0)
    batch_size: int = Field(256, ge=2)
    optimizer: Literal["sgd", "adam"] | None = None
    lr: float | None = Field(None, gt=0)
    momentum: float | None = Field(None, ge=0)
    weight_decay: float | None = Field(None, ge=0)
    schedule: Literal["cosine", "none"] | None = None
    augmentation_at: Literal["eval", "train", "both"] = "both"
    views: dict[str, Any] = Field(default_factory=dict)
    model_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    per_model: dict[str, ModelTrainOverrides] = Field(default_factory=dict)

    def settings_for(self, model: str) -> TrainSettings:
        """Concrete settings of ``model``: ``per_model`` wins over the explicit fields, which win over the model's
        proj18 defaults."""
        d = {**TRAIN_DEFAULTS[model], "batch_size": self.batch_size}
        override = self.per_model.get(model)
        for key in ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule"):
            value = getattr(override, key) if override is not None and getattr(override, key) is not None \
                else getattr(self, key)
            if value is not None:
                d[key] = value
        return TrainSettings(**d)


class EmbedConfig(_Strict):
    """The studied representation: backbone (64-d global pool, proj18) or projection-head output."""

    layer: Literal["backbone", "projection"] = "backbone"
    l2_normalize: bool = True
    batch_size: int = Field(512, ge=1)


class ScoreConfig(_Strict):
    """Bootstrap scoring: ``n_resamples`` draws (with replacement) of ``sample_size`` points from both clouds."""

    metrics: list[str] | Literal["all"] = "all"
    n_resamples: int = Field(1000, ge=2)
    sample_size: int = Field(100, ge=2)
    seed: int = 0
    knn_k: int = Field(5, ge=1)
    mtopdiv_backend: str = "auto"

    @property
    def metric_names(self) -> list[str]:
        """Cloud metrics (``METRICS``) and detection scores (``DETECTION_SCORES``) to compute; ``all`` is both."""
        return list(METRICS) + list(DETECTION_SCORES) if self.metrics == "all" else list(self.metrics)


class ResourcesConfig(_Strict):
    """Per-trial resources. ``gpus_per_trial: auto`` is 1 when the cluster has GPUs, else 0; fractions share a GPU."""

    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float | Literal["auto"] = "auto"
    bootstrap_workers: int = Field(1, ge=1)
    cpus_per_bootstrap_worker: float = Field(1.0, gt=0)
    max_concurrent_trials: int | None = Field(None, ge=1)


class TrackingConfig(_Strict):
    """MLflow tracking URI; ``null`` means ``MLFLOW_TRACKING_URI`` or MLflow's own default."""

    uri: str | None = None


class TuneRunConfig(_Strict):
    """Where Tune keeps trial state (``null``: ``~/ray_results``) and how often a failed trial is retried."""

    storage_path: str | None = None
    max_failures: int = Field(1, ge=0)


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
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    tune: TuneRunConfig = Field(default_factory=TuneRunConfig)

    def class_names(self) -> list[str]:
        """The evaluated classes: ``dataset.classes`` or all of the dataset's."""
        return list(self.dataset.classes or DATASETS[self.dataset.name].class_names)

    def train_classes(self) -> list[str]:
        return self.class_names() if self.grid.train_class == "all" else list(self.grid.train_class)

    def result_settings(self) -> dict[str, Any]:
        """The part of the config that determines a trial's results (not the grid, resources, paths or URIs)."""
        dumped = self.model_dump(mode="json")
        settings = {k: dumped[k] for k in RESULT_SECTIONS}
        settings["dataset"] = {k: v for k, v in settings["dataset"].items() if k not in ("root", "download")}
        return settings

    def trials(self) -> list["TrialSpec"]:
        """The grid's product, in Tune's order (model, train_class, augmentation, seed)."""
        return [TrialSpec(m, c, a, s) for m, c, a, s in itertools.product(
            self.grid.model, self.train_classes(), self.grid.augmentation, self.grid.seed)]


@dataclass(frozen=True)
class TrialSpec:
    """One point of the grid."""

    model: str
    train_class: str
    augmentation: str
    seed: int

    @property
    def key(self) -> str:
        """Deterministic identity, the MLflow tag ``sweeper.trial_key``."""
        return f"model={self.model}/train_class={self.train_class}/augmentation={self.augmentation}/seed={self.seed}"


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
                raise ConfigError(f"bad --set {'.'.join(path)}: {'.'.join(path[:i + 1])} is not a mapping")
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
    validate_names(cfg)
    return cfg


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> SweepConfig:
    """Read, override and validate a config file (no data is touched; see :func:`preflight`)."""
    return parse_config(apply_overrides(read_yaml(path), overrides or []))


def _choices(kind: str, bad: Any, valid: Any) -> ConfigError:
    return ConfigError(f"unknown {kind} {bad!r}; valid: {', '.join(map(str, valid))}")


def validate_names(cfg: SweepConfig) -> None:
    """Every name in ``cfg`` exists in its registry; every class exists in the dataset."""
    if cfg.dataset.name not in DATASETS:
        raise _choices("dataset", cfg.dataset.name, DATASETS)
    known = DATASETS[cfg.dataset.name].class_names
    for c in cfg.dataset.classes or []:
        if c not in known:
            raise _choices(f"class in dataset.classes for {cfg.dataset.name}", c, known)
    for c in cfg.train_classes():
        if c not in cfg.class_names():
            where = "dataset.classes" if cfg.dataset.classes else f"dataset {cfg.dataset.name!r}"
            raise ConfigError(f"unknown train_class {c!r} (not in {where}); valid: {', '.join(cfg.class_names())}")
    for m in cfg.grid.model:
        if m not in MODELS:
            raise _choices("model", m, MODELS)
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
    known_metrics = list(METRICS) + list(DETECTION_SCORES)
    for name in cfg.score.metric_names:
        if name not in known_metrics:
            raise _choices("metric", name, known_metrics)
    if not cfg.score.metric_names:
        raise ConfigError("score.metrics is empty; give at least one of: " + ", ".join(known_metrics))
    backends = ("auto", "giotto", "ripser", "ripserplusplus")
    if cfg.score.mtopdiv_backend not in backends:
        raise _choices("score.mtopdiv_backend", cfg.score.mtopdiv_backend, backends)
    unknown_views = set(cfg.train.views) - set(VIEW_DEFAULTS)
    if unknown_views:
        raise ConfigError(f"unknown train.views option(s) {sorted(unknown_views)}; valid: {', '.join(VIEW_DEFAULTS)}")
    for m in cfg.grid.model:
        try:
            cfg.train.settings_for(m)
        except ValueError as exc:
            raise ConfigError(f"train settings for {m}: {exc}") from None
    entry = DATASETS[cfg.dataset.name]
    if entry.needs_root and not cfg.dataset.root:
        raise ConfigError(f"dataset {cfg.dataset.name!r} needs dataset.root (e.g. --set dataset.root=/data/"
                          f"{cfg.dataset.name})")
    if len(set(cfg.trials())) != len(cfg.trials()):
        raise ConfigError("the grid lists a value twice; every trial must be unique")


def load_dataset(cfg: SweepConfig) -> ImageDataset:
    """The configured dataset with its class caps applied (raises ``DatasetNotFoundError`` if absent)."""
    d = cfg.dataset
    data = DATASETS[d.name].load(d.root, d.image_size, d.download)
    return data.subset(max_train_per_class=d.max_train_per_class, max_test_per_class=d.max_test_per_class,
                       seed=d.subset_seed)


def preflight(cfg: SweepConfig) -> ImageDataset:
    """Load the data once before anything starts: the dataset must exist and every cloud hold ``sample_size``
    points (the reference cloud of each training class and the test cloud of every evaluated class)."""
    try:
        data = load_dataset(cfg)
    except DatasetNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    need = cfg.score.sample_size
    train_sizes, test_sizes = data.class_sizes("train"), data.class_sizes("test")
    for c in cfg.train_classes():
        if "knn_auroc" in cfg.score.metric_names and train_sizes[c] < cfg.score.knn_k:
            raise ConfigError(f"score.knn_k={cfg.score.knn_k} is larger than the training cloud of class {c!r} "
                              f"({train_sizes[c]} images); lower score.knn_k")
        if train_sizes[c] < need:
            raise ConfigError(f"score.sample_size={need} is larger than the training cloud of class {c!r} "
                              f"({train_sizes[c]} images); lower score.sample_size")
    for c in cfg.class_names():
        if test_sizes[c] < need:
            raise ConfigError(f"score.sample_size={need} is larger than the test cloud of class {c!r} "
                              f"({test_sizes[c]} images); lower score.sample_size")
    return data


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
        detail = f" (got {got!r})" if err["type"] not in ("missing", "extra_forbidden") and not isinstance(got, dict) else ""
        parts.append(f"{loc or 'config'}: {msg}{detail}")
    more = len(exc.errors()) - 3
    return "invalid config: " + "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def bundled_config(name: str) -> Path:
    """Path of a config shipped in ``experiments/configs`` (e.g. ``"demo"``)."""
    return CONFIG_DIR / f"{name}.yaml"
