"""Grid expansion and trial identity: the product of the sweep axes, each point a :class:`TrialSpec` with a
deterministic key (the MLflow tag ``sweeper.trial_key``)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from experiments.anomaly_clustering import CLUSTERING_DATASETS, list_categories
from experiments.data import DATASETS

#: Training settings a ``per_model`` override or a grid param may set.
TRAIN_SETTING_KEYS = ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule")

#: Joins the classes of a training set into one ``train_class`` value (``"0+1+2+3+4"``).
CLASS_SET_SEPARATOR = "+"


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
        return f"{self.model}[{','.join(f'{k}={param_str(v)}' for k, v in self.params)}]"

    @property
    def key(self) -> str:
        """Deterministic identity, the MLflow tag ``sweeper.trial_key``; param axes come before the seed."""
        params = "".join(f"/{k}={param_str(v)}" for k, v in self.params)
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
            tuple((str(k), freeze(v)) for k, v in d.get("params", ())),
        )


def expand_grid(
    models: Sequence[str],
    train_classes: Sequence[str],
    augmentations: Sequence[str],
    params: dict[str, list[Any]],
    seeds: Sequence[int],
) -> list[TrialSpec]:
    """The product of the axes, in Tune's order (model, train_class, augmentation, params, seed); ``params`` is
    expanded over its sorted names, each point a tuple of ``(name, value)`` pairs."""
    names = sorted(params)
    combos = [
        tuple((n, freeze(v)) for n, v in zip(names, values, strict=True))
        for values in itertools.product(*(params[n] for n in names))
    ]
    return [
        TrialSpec(m, c, a, s, p)
        for m, c, a, p, s in itertools.product(models, train_classes, augmentations, combos, seeds)
    ]


def dataset_classes(name: str, root: str | None) -> list[str]:
    """Every class of dataset ``name``: the registry's (for ``image_folder`` the class folders under ``root``: a
    listing, ``DatasetNotFoundError`` when it is missing), or for an anomaly-clustering dataset its categories (those
    found under ``root`` for ``mvtec``, else the known list)."""
    if name in CLUSTERING_DATASETS:
        found = list_categories(root) if name == "mvtec" and root else []
        return found or list(CLUSTERING_DATASETS[name])
    return DATASETS[name].classes(root)


def freeze(v: Any) -> Any:
    """Hashable form of a param value (lists become tuples)."""
    return tuple(freeze(x) for x in v) if isinstance(v, (list, tuple)) else v


def param_str(v: Any) -> str:
    """A param value as trial keys and labels write it (sequences joined with commas)."""
    return ",".join(map(param_str, v)) if isinstance(v, (list, tuple)) else str(v)
