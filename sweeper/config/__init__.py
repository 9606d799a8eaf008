"""Sweep configuration: YAML → validated, typed objects → the list of trials.

:mod:`~sweeper.config.schema` (the pydantic sections; :mod:`~sweeper.config.runtime` those that do not change
results: resources, tracking, tune), :mod:`~sweeper.config.grid` (grid expansion, trial identity), :mod:`~sweeper.config.loading` (YAML, ``--set`` overrides), :mod:`~sweeper.config.validate` (registry
checks) and :mod:`~sweeper.config.preflight` (the data check). Every public name is importable from here.
"""

from __future__ import annotations

from sweeper.config.grid import CLASS_SET_SEPARATOR, TRAIN_SETTING_KEYS, TrialSpec, expand_grid
from sweeper.config.loading import (
    apply_overrides,
    bundled_config,
    format_validation_error,
    load_config,
    parse_config,
    parse_overrides,
    read_yaml,
)
from sweeper.config.preflight import load_dataset, preflight
from sweeper.config.schema import (
    CONFIG_DIR,
    RESULT_SECTIONS,
    ConfigError,
    DatasetConfig,
    EmbedConfig,
    GridConfig,
    ModelTrainOverrides,
    OODConfig,
    ResourcesConfig,
    ScoreConfig,
    StrictModel,
    SweepConfig,
    TrackingConfig,
    TrainConfig,
    TuneRunConfig,
    known_scores,
)
from sweeper.config.validate import validate_names

__all__ = [
    "CLASS_SET_SEPARATOR",
    "CONFIG_DIR",
    "RESULT_SECTIONS",
    "TRAIN_SETTING_KEYS",
    "ConfigError",
    "DatasetConfig",
    "EmbedConfig",
    "GridConfig",
    "ModelTrainOverrides",
    "OODConfig",
    "ResourcesConfig",
    "ScoreConfig",
    "StrictModel",
    "SweepConfig",
    "TrackingConfig",
    "TrainConfig",
    "TrialSpec",
    "TuneRunConfig",
    "apply_overrides",
    "bundled_config",
    "expand_grid",
    "format_validation_error",
    "known_scores",
    "load_config",
    "load_dataset",
    "parse_config",
    "parse_overrides",
    "preflight",
    "read_yaml",
    "validate_names",
]
