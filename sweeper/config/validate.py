"""Registry checks of a parsed config: every name exists in its registry, every class in the dataset, every model
builds with its options. Each check is one small function raising :class:`ConfigError` with one line; they run in
the order of :data:`CHECKS` (the first problem found is the one reported)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from experiments.anomaly_clustering import CLUSTERING_DATASETS
from experiments.augment import AUGMENTATIONS, VIEW_DEFAULTS, make_augmentation
from experiments.data import DATASETS, DatasetNotFoundError
from experiments.metrics import METRIC_SPECS, METRICS
from experiments.models import MODELS
from sweeper.config.grid import CLASS_SET_SEPARATOR, dataset_classes
from sweeper.config.schema import (
    ConfigError,
    ScoreConfig,
    SweepConfig,
    first_line,
    is_clustering_model,
    known_scores,
)


def choices(kind: str, bad: Any, valid: Any) -> ConfigError:
    """The error for an unknown name: ``unknown <kind> <bad>; valid: <the known names>``."""
    return ConfigError(f"unknown {kind} {bad!r}; valid: {', '.join(map(str, valid))}")


def weights_ref(options: dict[str, Any]) -> str | None:
    """The ``trial:…`` / ``run:…`` reference in a model's ``backbone_weights`` or ``weights`` option, if any."""
    ref = options.get("backbone_weights", options.get("weights"))
    return ref if isinstance(ref, str) and ref.startswith(("trial:", "run:")) else None


def check_model_names(cfg: SweepConfig) -> None:
    """Every grid model is in ``experiments.models.MODELS``."""
    for m in cfg.grid.model:
        if m not in MODELS:
            raise choices("model", m, MODELS)


def check_dataset_name(cfg: SweepConfig) -> None:
    """The dataset is in the registry of the grid's family (anomaly-clustering datasets or ``DATASETS``)."""
    clustering = cfg.is_clustering
    registry = CLUSTERING_DATASETS if clustering else DATASETS
    if cfg.dataset.name not in registry:
        what = "anomaly-clustering dataset" if clustering else "dataset"
        raise choices(what, cfg.dataset.name, registry)


def check_dataset_classes(cfg: SweepConfig) -> None:
    """Every class of ``dataset.classes`` is a class of the dataset."""
    known = cfg.class_names() if not cfg.dataset.classes else dataset_classes(cfg.dataset.name, cfg.dataset.root)
    for c in cfg.dataset.classes or []:
        if c not in known:
            raise choices(f"class in dataset.classes for {cfg.dataset.name}", c, known)


def check_train_classes(cfg: SweepConfig) -> None:
    """One of ``grid.train_class`` / ``grid.train_classes``; every set non-empty, of evaluated classes, no repeats."""
    if cfg.grid.train_classes is not None and cfg.grid.train_class != "all":
        raise ConfigError(
            "give grid.train_class (one class per trial) or grid.train_classes (a set per trial), not both"
        )
    if cfg.grid.train_classes is not None and not all(cfg.grid.train_classes):
        raise ConfigError("grid.train_classes: every class set needs at least one class")
    where = _classes_source(cfg)
    for group in cfg.train_classes():
        for c in group.split(CLASS_SET_SEPARATOR):
            if c not in cfg.class_names():
                raise ConfigError(f"unknown train_class {c!r} (not in {where}); valid: {', '.join(cfg.class_names())}")
        if len(set(group.split(CLASS_SET_SEPARATOR))) != len(group.split(CLASS_SET_SEPARATOR)):
            raise ConfigError(f"grid.train_classes: class set {group!r} lists a class twice")


def check_seen_classes(cfg: SweepConfig) -> None:
    """Every class of ``ood.seen_classes`` is evaluated and is not a training class."""
    where = _classes_source(cfg)
    for c in cfg.ood.seen_classes:
        if c not in cfg.class_names():
            raise ConfigError(
                f"unknown class {c!r} in ood.seen_classes (not in {where}); valid: {', '.join(cfg.class_names())}"
            )
        if any(c in group.split(CLASS_SET_SEPARATOR) for group in cfg.train_classes()):
            raise ConfigError(f"ood.seen_classes: class {c!r} is also a training class")


def check_ood_datasets(cfg: SweepConfig) -> None:
    """``ood.seen_dataset`` and every ``ood.anomaly_datasets`` name are in ``DATASETS``."""
    for name in [cfg.ood.seen_dataset] * bool(cfg.ood.seen_dataset) + list(cfg.ood.anomaly_datasets):
        if name not in DATASETS:
            raise choices("dataset in ood", name, DATASETS)


def check_train_model_sections(cfg: SweepConfig) -> None:
    """``train.model_options`` and ``train.per_model`` name known models."""
    for section in ("model_options", "per_model"):
        for m in getattr(cfg.train, section):
            if m not in MODELS:
                raise choices(f"model in train.{section}", m, MODELS)


def check_augmentations(cfg: SweepConfig) -> None:
    """Every augmentation named is registered, and every grid augmentation builds with its options."""
    for a in list(cfg.grid.augmentation) + list(cfg.augmentations):
        if a not in AUGMENTATIONS:
            raise choices("augmentation", a, AUGMENTATIONS)
    for a in cfg.grid.augmentation:
        try:
            make_augmentation(a, **cfg.augmentations.get(a, {}))
        except ValueError as exc:
            raise ConfigError(f"augmentations.{a}: {exc}") from None


def check_metrics(cfg: SweepConfig) -> None:
    """``score.metrics`` is a non-empty list of known scores, ``score.full_cloud`` of cloud metrics, and
    ``score.metric_options`` (with the deprecated ``score.mtopdiv_backend``) options of the metrics."""
    known_metrics = known_scores()
    for name in cfg.score.metric_names:
        if name not in known_metrics:
            raise choices("metric", name, known_metrics)
    if not cfg.score.metric_names:
        raise ConfigError("score.metrics is empty; give at least one of: " + ", ".join(known_metrics))
    if cfg.score.full_cloud != "auto":
        for name in cfg.score.full_cloud:
            if name not in METRICS:
                raise choices("score.full_cloud metric", name, list(METRICS))
    check_metric_options(cfg.score)


def check_metric_options(score: ScoreConfig) -> None:
    """The deprecated ``score.mtopdiv_backend`` is a known backend that agrees with ``metric_options``; every
    ``score.metric_options`` entry names a registered metric and sets only its options, to accepted values
    (:meth:`experiments.metrics.MetricSpec.check_options`)."""
    legacy = score.deprecated_mtopdiv_backend
    if legacy is not None:
        backends = METRIC_SPECS["mtopdiv"].options["backend"].choices
        if legacy not in backends:
            raise choices("score.mtopdiv_backend", legacy, backends)
        if score.mtopdiv_backend != legacy:
            raise ConfigError(
                "give score.metric_options.mtopdiv.backend or the deprecated score.mtopdiv_backend, not both"
            )
    for name, options in score.metric_options.items():
        if name not in METRIC_SPECS:
            raise choices("metric in score.metric_options", name, METRIC_SPECS)
        try:
            METRIC_SPECS[name].check_options(options)
        except ValueError as exc:
            raise ConfigError(f"score.metric_options.{name}: {exc}") from None


def check_train_views(cfg: SweepConfig) -> None:
    """``train.views`` sets only known view options."""
    unknown_views = set(cfg.train.views) - set(VIEW_DEFAULTS)
    if unknown_views:
        raise ConfigError(f"unknown train.views option(s) {sorted(unknown_views)}; valid: {', '.join(VIEW_DEFAULTS)}")


def check_train_settings(cfg: SweepConfig) -> None:
    """Every trial's training settings build."""
    for spec in cfg.trials():
        try:
            cfg.settings_for(spec)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"train settings for {spec.key}: {first_line(exc)}") from None


@contextlib.contextmanager
def _no_random_init_warning(quiet: bool) -> Iterator[None]:
    """While ``quiet``, the backbone loader's "randomly initialised" warning is held back: :func:`check_models`
    builds a model whose weights are a ``trial:`` / ``run:`` reference without them, to check its other options, and
    the trial will load the referenced weights."""
    logger = logging.getLogger("experiments.anomaly_clustering.features")
    level = logger.level
    if quiet:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def check_models(cfg: SweepConfig) -> None:
    """Build every model of the grid once (on the CPU, with each combination of grid params) so that unknown or bad
    options fail now; a model that mines seen OoD images needs ``ood.seen_classes``, ``ood.seen_dataset`` or
    ``ood.seen_synthetic``."""
    clustering = [is_clustering_model(m) for m in cfg.grid.model]
    if any(clustering) and not all(clustering):
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
        entry = MODELS[spec.model]
        referenced = bool(weights_ref(options)) and entry.build is not None
        if referenced:
            if options.get("weights") != weights_ref(options):
                continue  # resolved (and checked) against the tracking store by preflight
            options = {**options, "weights": None}  # the reference is preflight's; the other options are checked now
        try:
            with _no_random_init_warning(referenced):
                model = entry.family.validate_options(entry.build, options, image_size=cfg.dataset.image_size)
        except (TypeError, ValueError, FileNotFoundError) as exc:
            where = "".join(f" {k}={v}" for k, v in spec.params)
            raise ConfigError(f"model {spec.model!r} options{where or ''}: {first_line(exc)}") from None
        if model is not None and entry.family.needs_seen_ood(model) and not cfg.ood.has_seen_source:
            raise ConfigError(
                f"model {spec.model!r} mines seen out-of-distribution images: set ood.seen_classes, "
                "ood.seen_dataset or ood.seen_synthetic (or turn mining off)"
            )


def check_dataset_root(cfg: SweepConfig) -> None:
    """A dataset that lives in a local folder has ``dataset.root`` set."""
    if cfg.is_clustering:
        if cfg.dataset.name == "mvtec" and not cfg.dataset.root:
            raise ConfigError(
                "dataset 'mvtec' needs dataset.root (the folder holding the MVTec AD categories, e.g. "
                "--set dataset.root=/data/mvtec_ad)"
            )
    elif DATASETS[cfg.dataset.name].needs_root and not cfg.dataset.root:
        raise ConfigError(
            f"dataset {cfg.dataset.name!r} needs dataset.root (e.g. --set dataset.root=/data/{cfg.dataset.name})"
        )


def check_unique_trials(cfg: SweepConfig) -> None:
    """No two grid points are the same trial."""
    if len(set(cfg.trials())) != len(cfg.trials()):
        raise ConfigError("the grid lists a value twice; every trial must be unique")


def _classes_source(cfg: SweepConfig) -> str:
    return "dataset.classes" if cfg.dataset.classes else f"dataset {cfg.dataset.name!r}"


#: The registry checks, in the order they run.
CHECKS: tuple[Callable[[SweepConfig], None], ...] = (
    check_model_names,
    check_dataset_name,
    check_dataset_classes,
    check_train_classes,
    check_seen_classes,
    check_ood_datasets,
    check_train_model_sections,
    check_augmentations,
    check_metrics,
    check_train_views,
    check_train_settings,
    check_models,
    check_dataset_root,
    check_unique_trials,
)


def validate_names(cfg: SweepConfig) -> None:
    """Every name in ``cfg`` exists in its registry; every class exists in the dataset (each of :data:`CHECKS`).
    A dataset whose classes are its folders (``image_folder``) is listed by the class checks: a missing or
    malformed root (``DatasetNotFoundError``) is then the error, on one line."""
    try:
        for check in CHECKS:
            check(cfg)
    except DatasetNotFoundError as exc:
        raise ConfigError(first_line(exc)) from None
