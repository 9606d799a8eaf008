"""Loading a config: YAML file → ``--set`` overrides → validated :class:`~sweeper.config.schema.SweepConfig`."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from experiments.data import DATASETS, DatasetNotFoundError
from sweeper.config.schema import CONFIG_DIR, ConfigError, SweepConfig, first_line
from sweeper.config.validate import validate_names


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
            raise ConfigError(f"bad --set {item!r}: value is not valid YAML ({first_line(exc)})") from None
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
    """The mapping in YAML file ``path`` (``yaml.safe_load``); ``ConfigError`` if absent, malformed or not a mapping."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML in {p}: {first_line(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p} must hold a mapping of config keys, got {type(raw).__name__}")
    return raw


def parse_config(raw: dict[str, Any]) -> SweepConfig:
    """Validate a raw mapping into a :class:`SweepConfig` and check every registry name."""
    try:
        cfg = SweepConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    try:
        validate_names(cfg)
    except ConfigError:
        raise_if_dataset_missing(cfg)  # a missing dataset is the cause to fix first (its classes are then moot)
        raise
    return cfg


def raise_if_dataset_missing(cfg: SweepConfig) -> None:
    """``ConfigError`` with the expected path and how to get the data when ``cfg``'s dataset needs a root that is
    unset or lacks the files (a presence check only, no file is read)."""
    entry = DATASETS.get(cfg.dataset.name)
    if entry is None or entry.require is None or cfg.is_clustering or cfg.dataset.download:
        return
    try:
        entry.require(cfg.dataset.root)
    except DatasetNotFoundError as exc:
        raise ConfigError(first_line(exc)) from None


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> SweepConfig:
    """Read, override and validate a config file (no data is touched; see :func:`sweeper.config.preflight`)."""
    return parse_config(apply_overrides(read_yaml(path), overrides or []))


def format_validation_error(exc: ValidationError) -> str:
    """One line for a pydantic error: the first three problems as ``loc: message (got value)``, then a count."""
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
