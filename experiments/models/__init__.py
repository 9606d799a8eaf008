"""Model registry: ``MODELS[name]`` builds a model; ``MODEL_FAMILIES[name]`` says how it is trained and scored;
``TRAIN_DEFAULTS[name]`` are its default optimisation settings.

Families:

- ``"ssl"`` -- self-supervised on one class (or a set) from two views per image (:class:`SSLModel`, trained by
  :func:`experiments.train.train`): SimCLR, Barlow Twins on ResNet-20, as proj18.
- ``"labelled"`` -- learns several classes from their labels (:class:`LabelledModel`, trained by
  :func:`experiments.train_labelled.train_labelled`): weakly-supervised siamese/triplet (V)AEs, ODM.
- ``"clustering"`` -- no training: patch features of a (pre-trained or earlier-trained) backbone, clustered into
  anomaly types (:mod:`experiments.anomaly_clustering`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from experiments.models.barlow_twins import BarlowTwins
from experiments.models.base import EmbedLayer, SSLModel
from experiments.models.labelled import LabelledModel
from experiments.models.odm import ODM, ODM_DEFAULTS
from experiments.models.resnet import CifarResNet, resnet20
from experiments.models.simclr import SimCLR
from experiments.models.weak_metric import WEAK_METRIC_DEFAULTS, WeakMetricAE

BACKBONES: dict[str, Callable[[], CifarResNet]] = {
    "resnet20": resnet20,
}


def _ssl(cls: type[SSLModel]) -> Callable[..., SSLModel]:
    def build(
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        image_size: int = 32,
        backbone: str = "resnet20",
        **kwargs: Any,
    ) -> SSLModel:
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; valid: {', '.join(BACKBONES)}")
        net = BACKBONES[backbone]()
        return cls(net, net.feature_dim, mean, std, **kwargs)

    build.__doc__ = f"{cls.__name__} on a fresh ``BACKBONES[backbone]``; ``kwargs`` go to the model."
    return build


def _weak_metric(
    mean: tuple[float, ...], std: tuple[float, ...], *, image_size: int = 32, **kwargs: Any
) -> WeakMetricAE:
    return WeakMetricAE((3, image_size, image_size), mean, std, **kwargs)


def _odm(mean: tuple[float, ...], std: tuple[float, ...], *, image_size: int = 32, **kwargs: Any) -> ODM:
    return ODM(mean, std, **kwargs)


def _no_model(mean: tuple[float, ...], std: tuple[float, ...], **kwargs: Any) -> nn.Module:
    raise ValueError(
        "anomaly_clustering has no trainable model: its trial extracts patch features (experiments.anomaly_clustering)"
    )


#: ``MODELS[name](mean, std, *, image_size, **options)`` builds a fresh model.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "simclr": _ssl(SimCLR),
    "barlow_twins": _ssl(BarlowTwins),
    "weak_metric_ae": _weak_metric,
    "odm": _odm,
    "anomaly_clustering": _no_model,
}

MODEL_FAMILIES: dict[str, str] = {
    "simclr": "ssl",
    "barlow_twins": "ssl",
    "weak_metric_ae": "labelled",
    "odm": "labelled",
    "anomaly_clustering": "clustering",
}

#: proj18's optimisation: SimCLR SGD lr 6e-3, momentum 0.9, weight decay 5e-4, cosine schedule, 100 epochs;
#: Barlow Twins SGD lr 0.06, momentum 0.9, 150 epochs (lightly's example settings). The other families' defaults
#: come with their models.
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "simclr": {
        "epochs": 100,
        "optimizer": "sgd",
        "lr": 6e-3,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "schedule": "cosine",
    },
    "barlow_twins": {
        "epochs": 150,
        "optimizer": "sgd",
        "lr": 0.06,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "schedule": "none",
    },
    "weak_metric_ae": dict(WEAK_METRIC_DEFAULTS),
    "odm": dict(ODM_DEFAULTS),
    "anomaly_clustering": {
        "epochs": 0,
        "optimizer": "sgd",
        "lr": 1.0,
        "momentum": 0.0,
        "weight_decay": 0.0,
        "schedule": "none",
    },
}


def build_model(
    name: str, mean: tuple[float, ...], std: tuple[float, ...], *, image_size: int = 32, **kwargs: Any
) -> nn.Module:
    """``MODELS[name]`` with input normalisation ``mean``/``std`` for ``image_size`` inputs; ``kwargs`` are the
    model's options (head sizes, temperature, latent dimension…)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    return MODELS[name](mean, std, image_size=image_size, **kwargs)


__all__ = [
    "BACKBONES",
    "MODELS",
    "MODEL_FAMILIES",
    "ODM",
    "TRAIN_DEFAULTS",
    "BarlowTwins",
    "EmbedLayer",
    "LabelledModel",
    "SSLModel",
    "SimCLR",
    "WeakMetricAE",
    "build_model",
    "resnet20",
]
