"""The data check before anything starts: the dataset loads, every cloud holds ``sample_size`` points, weights named
by a run exist in the tracking store."""

from __future__ import annotations

from experiments.anomaly_clustering import (
    CLUSTERING_OPTION_DEFAULTS,
    clustering_root,
    load_backbone,
    load_mvtec_category,
)
from experiments.data import DATASETS, DatasetNotFoundError, ImageDataset
from sweeper.config.grid import CLASS_SET_SEPARATOR
from sweeper.config.schema import ConfigError, SweepConfig, first_line
from sweeper.config.validate import weights_ref


def load_dataset(cfg: SweepConfig) -> ImageDataset:
    """The configured dataset with its class caps applied (raises ``DatasetNotFoundError`` if absent)."""
    d = cfg.dataset
    entry = DATASETS[d.name]
    data = entry.load(d.root, d.image_size, d.download, **d.load_kwargs(entry.load_options))
    return data.subset(
        max_train_per_class=d.max_train_per_class, max_test_per_class=d.max_test_per_class, seed=d.subset_seed
    )


def preflight(cfg: SweepConfig) -> ImageDataset | None:
    """Load the data once before anything starts: the dataset must exist and every cloud hold ``sample_size``
    points (the reference cloud of each training class and the test cloud of every evaluated class); backbone
    weights named by a run (``trial:…`` / ``run:…``) must exist in the tracking store. Anomaly clustering: every
    category must be readable (the synthetic set is generated here)."""
    check_weight_refs(cfg)
    check_weight_files(cfg)
    if cfg.is_clustering:
        try:
            root = clustering_root(cfg.dataset.name, cfg.dataset.root)
            for category in cfg.train_classes():
                load_mvtec_category(root, category, 8)
        except (DatasetNotFoundError, ValueError) as exc:
            raise ConfigError(first_line(exc)) from None
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
        check_size(
            need, {c: train_sizes[c] for c in cfg.train_classes()}, {c: test_sizes[c] for c in cfg.class_names()}
        )
    return data


def check_size(need: int, train_sizes: dict[str, int], test_sizes: dict[str, int]) -> None:
    """Every training cloud, then every test cloud, holds at least ``need`` points."""
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


def check_weight_refs(cfg: SweepConfig) -> None:
    """Every ``trial:…`` / ``run:…`` weights reference of the grid resolves to a run of the tracking store."""
    refs = {ref for spec in cfg.trials() if (ref := weights_ref(cfg.model_options(spec)))}
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


def check_weight_files(cfg: SweepConfig) -> None:
    """Every local backbone-weights file of an anomaly-clustering trial loads completely into its backbone
    (:func:`experiments.models.checkpoints.load_weights`: a file lacking backbone tensors, or holding tensors that
    are neither the backbone's nor a head's, is refused). Frozen and weak-metric models load theirs when
    :func:`sweeper.config.validate.check_models` builds them; ``trial:`` / ``run:`` references load in the trial."""
    if not cfg.is_clustering:
        return
    seen: set[tuple[str, str]] = set()
    for spec in cfg.trials():
        o = {**CLUSTERING_OPTION_DEFAULTS, **cfg.model_options(spec)}
        weights = o["weights"]
        if weights is None or weights_ref(o) or (o["backbone"], str(weights)) in seen:
            continue
        seen.add((o["backbone"], str(weights)))
        try:
            load_backbone(o["backbone"], weights, cfg.dataset.image_size)
        except (ValueError, FileNotFoundError) as exc:
            raise ConfigError(f"model {spec.model!r} weights: {first_line(exc)}") from None
