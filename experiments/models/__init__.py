"""Model registry: ``MODELS[name]`` is a :class:`ModelSpec`: its ``build`` function, its ``family`` (how it is trained
and scored, :mod:`experiments.models.family`) and its ``train_defaults`` (default optimisation settings).

Adding a model: write its module (the model class and a build function) and add one ``MODELS`` line.

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

from experiments.models import byol, moco_v2, simsiam, vicreg
from experiments.models.barlow_twins import BarlowTwins
from experiments.models.base import EmbedLayer, SSLModel
from experiments.models.family import CLUSTERING, FAMILIES, FROZEN, LABELLED, SSL, Family, ModelSpec
from experiments.models.labelled import LabelledModel
from experiments.models.odm import ODM, ODM_DEFAULTS
from experiments.models.resnet import CifarResNet, resnet20
from experiments.models.simclr import SimCLR
from experiments.models.weak_metric import WEAK_METRIC_DEFAULTS, WeakMetricAE

BACKBONES: dict[str, Callable[[], CifarResNet]] = {
    "resnet20": resnet20,
}

#: The training settings of a family that trains nothing (valid settings; zero epochs).
NO_TRAINING: dict[str, Any] = {
    "epochs": 0,
    "optimizer": "sgd",
    "lr": 1.0,
    "momentum": 0.0,
    "weight_decay": 0.0,
    "schedule": "none",
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


def _frozen(mean: tuple[float, ...], std: tuple[float, ...], *, image_size: int = 32, **kwargs: Any) -> nn.Module:
    from experiments.models.frozen import FrozenEncoder  # imports the anomaly-clustering backbones only when used

    return FrozenEncoder(mean, std, image_size=image_size, **kwargs)


#: The registry: ``MODELS[name]`` is the model's :class:`ModelSpec` (its build function, family and training
#: defaults). proj18's optimisation: SimCLR SGD lr 6e-3, momentum 0.9, weight decay 5e-4, cosine schedule, 100
#: epochs; Barlow Twins SGD lr 0.06, momentum 0.9, 150 epochs (lightly's example settings). The other families'
#: defaults come with their models.
MODELS: dict[str, ModelSpec] = {
    "simclr": ModelSpec(
        _ssl(SimCLR),
        SSL,
        {"epochs": 100, "optimizer": "sgd", "lr": 6e-3, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine"},
    ),
    "barlow_twins": ModelSpec(
        _ssl(BarlowTwins),
        SSL,
        {"epochs": 150, "optimizer": "sgd", "lr": 0.06, "momentum": 0.9, "weight_decay": 0.0, "schedule": "none"},
    ),
    "byol": ModelSpec(_ssl(byol.BYOL), SSL, byol.TRAIN_DEFAULTS),
    "vicreg": ModelSpec(_ssl(vicreg.VICReg), SSL, vicreg.TRAIN_DEFAULTS),
    "moco_v2": ModelSpec(_ssl(moco_v2.MoCoV2), SSL, moco_v2.TRAIN_DEFAULTS),
    "simsiam": ModelSpec(_ssl(simsiam.SimSiam), SSL, simsiam.TRAIN_DEFAULTS),
    "weak_metric_ae": ModelSpec(_weak_metric, LABELLED, WEAK_METRIC_DEFAULTS),
    "odm": ModelSpec(_odm, LABELLED, ODM_DEFAULTS),
    "frozen": ModelSpec(_frozen, FROZEN, NO_TRAINING),
    "anomaly_clustering": ModelSpec(None, CLUSTERING, NO_TRAINING),
}

#: Views of the registry kept for the modules that read them by name (the family's name, the defaults as dicts).
MODEL_FAMILIES: dict[str, str] = {name: spec.family.name for name, spec in MODELS.items()}
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {name: dict(spec.train_defaults) for name, spec in MODELS.items()}


def build_model(
    name: str, mean: tuple[float, ...], std: tuple[float, ...], *, image_size: int = 32, **kwargs: Any
) -> nn.Module:
    """``MODELS[name]`` with input normalisation ``mean``/``std`` for ``image_size`` inputs; ``kwargs`` are the
    model's options (head sizes, temperature, latent dimension…)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    build = MODELS[name].build
    if build is None:
        raise ValueError(f"{name} has no trainable model: its family ({MODELS[name].family.name}) builds none")
    return build(mean, std, image_size=image_size, **kwargs)


__all__ = [
    "BACKBONES",
    "FAMILIES",
    "MODELS",
    "MODEL_FAMILIES",
    "ODM",
    "TRAIN_DEFAULTS",
    "BarlowTwins",
    "EmbedLayer",
    "Family",
    "LabelledModel",
    "ModelSpec",
    "SSLModel",
    "SimCLR",
    "WeakMetricAE",
    "build_model",
    "resnet20",
]
