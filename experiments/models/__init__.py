"""Model registry: ``MODELS[name]`` builds a self-supervised model; ``TRAIN_DEFAULTS[name]`` are proj18's settings."""

from __future__ import annotations

from typing import Any, Callable

from experiments.models.barlow_twins import BarlowTwins
from experiments.models.base import EmbedLayer, SSLModel
from experiments.models.resnet import CifarResNet, resnet20
from experiments.models.simclr import SimCLR

MODELS: dict[str, Callable[..., SSLModel]] = {
    "simclr": SimCLR,
    "barlow_twins": BarlowTwins,
}

BACKBONES: dict[str, Callable[[], CifarResNet]] = {
    "resnet20": resnet20,
}

#: proj18's optimisation: SimCLR SGD lr 6e-3, momentum 0.9, weight decay 5e-4, cosine schedule, 100 epochs;
#: Barlow Twins SGD lr 0.06, momentum 0.9, 150 epochs (lightly's example settings).
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "simclr": {"epochs": 100, "optimizer": "sgd", "lr": 6e-3, "momentum": 0.9, "weight_decay": 5e-4,
               "schedule": "cosine"},
    "barlow_twins": {"epochs": 150, "optimizer": "sgd", "lr": 0.06, "momentum": 0.9, "weight_decay": 0.0,
                     "schedule": "none"},
}


def build_model(name: str, mean: tuple[float, ...], std: tuple[float, ...], *, backbone: str = "resnet20",
                **kwargs: Any) -> SSLModel:
    """``MODELS[name]`` on a fresh ``BACKBONES[backbone]``; ``kwargs`` go to the model (head sizes, temperature…)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; valid: {', '.join(BACKBONES)}")
    net = BACKBONES[backbone]()
    return MODELS[name](net, net.feature_dim, mean, std, **kwargs)


__all__ = ["BACKBONES", "MODELS", "TRAIN_DEFAULTS", "BarlowTwins", "EmbedLayer", "SSLModel", "SimCLR",
           "build_model", "resnet20"]
