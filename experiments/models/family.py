"""Model families: one object per family that knows, for its models, how to validate their options, how to train
them (or that nothing is trained), what goes into the training-cache key, which clouds a trial produces and which
extra artifacts it returns (bytes or figures by artifact path; logging them is the sweeper's job).

The sweeper never compares family names: it asks the trial's :class:`Family` (``MODELS[name].family``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

#: The clouds a trial can produce: the embedded training images of the training class(es) (``reference``), the
#: embedded test images of every evaluated class (``eval``) and the embedded anomaly sets (``anomaly``).
CLOUD_KINDS: tuple[str, ...] = ("reference", "eval", "anomaly")


@dataclass
class TrainInputs:
    """Everything a family's :meth:`Family.fit` may need besides the model (each family reads its own fields).

    ``seen_ood`` is called only by a model that mines seen out-of-distribution images (it loads them lazily).
    ``view`` is the two-view SSL transform; ``pipeline``, ``channels_last``, ``compile`` and ``num_workers`` are the
    SSL loop's input options; ``flip`` the label-supervised loop's random flips.
    """

    images: torch.Tensor
    labels: torch.Tensor
    settings: Any
    device: torch.device | str = "cpu"
    seed: int = 0
    state: Any = None
    on_epoch: Callable[..., None] | None = None
    perturb: Any = None
    amp: bool | None = None
    view: Any = None
    pipeline: str = "batched"
    channels_last: bool | None = None
    compile: bool = False
    num_workers: int = 0
    flip: bool = False
    seen_ood: Callable[[], torch.Tensor] | None = None


@dataclass
class TrialOutputs:
    """What a trial produced, handed to :meth:`Family.extra_artifacts`: the evaluation clouds by class name, the
    class names of the dataset (their index is the label) and, for families that produce more, ``extra``."""

    clouds: Mapping[str, np.ndarray]
    class_names: list[str]
    extra: dict[str, Any] = field(default_factory=dict)


class Family:
    """A model family (the base behaviour: a model built by its registry entry, scored on its clouds).

    Attributes:
        name: The family's name, logged as the trial's ``family`` param.
        trains: Whether :meth:`fit` trains anything (``False``: the weights are the built ones).
        clouds: Which of :data:`CLOUD_KINDS` its trials produce and score with the bootstrap metrics.
        own_scores: Its trials score themselves (clustering metrics) instead of the bootstrap metrics on clouds.
        reads_categories: It reads an MVTec-layout dataset of categories instead of a class-labelled image dataset
            (such a family cannot share a grid with the others).
    """

    name: str = ""
    trains: bool = True
    clouds: frozenset[str] = frozenset(CLOUD_KINDS)
    own_scores: bool = False
    reads_categories: bool = False

    def validate_options(
        self, build: Callable[..., nn.Module], options: Mapping[str, Any], *, image_size: int = 32
    ) -> nn.Module | None:
        """Check a model's options by building it once on the CPU (``build(mean, std, image_size=…, **options)``);
        raises ``TypeError`` / ``ValueError`` / ``FileNotFoundError`` with the reason; returns the built model."""
        return build((0.5,) * 3, (0.25,) * 3, image_size=image_size, **options)

    def needs_seen_ood(self, model: nn.Module) -> bool:
        """Whether ``model`` trains with seen out-of-distribution images."""
        return bool(getattr(model, "uses_ood", False))

    def key_parts(self, *, ood: Any) -> dict[str, Any]:
        """The family's parts of the training-cache key beyond the common ones (model, options, settings, data)."""
        return {"ood": None}

    def fit(self, model: nn.Module, inputs: TrainInputs) -> None:
        """Train ``model`` in place (the base family trains nothing)."""

    def tags(self, model: nn.Module) -> dict[str, Any]:
        """Run tags the family sets once the model is built (e.g. ``sweeper.random_init``)."""
        return {}

    def extra_artifacts(self, outputs: TrialOutputs) -> dict[str, Any]:
        """Extra artifacts by artifact path: ``bytes`` (written as the file) or a matplotlib figure (saved as PNG)."""
        return {}


class SSLFamily(Family):
    """Self-supervised on one class (or a set) from two views per image, by :func:`experiments.train.train`."""

    name = "ssl"

    def fit(self, model: nn.Module, inputs: TrainInputs) -> None:
        """:func:`experiments.train.train` with the trial's two-view transform and input pipeline."""
        from experiments.train import train

        i = inputs
        train(
            model,
            i.images,
            i.settings,
            i.view,
            perturb=i.perturb,
            device=i.device,
            seed=i.seed,
            state=i.state,
            on_epoch=i.on_epoch,
            pipeline=i.pipeline,
            amp=i.amp,
            channels_last=i.channels_last,
            compile=i.compile,
            num_workers=i.num_workers,
        )


class LabelledFamily(Family):
    """Learns several classes from their labels (and, for mining models, seen OoD images), by
    :func:`experiments.train_labelled.train_labelled`; logs a 2-D view of its latent space."""

    name = "labelled"

    def key_parts(self, *, ood: Any) -> dict[str, Any]:
        """The OoD settings decide which seen out-of-distribution images a mining model trains with."""
        return {"ood": ood}

    def fit(self, model: nn.Module, inputs: TrainInputs) -> None:
        """:func:`experiments.train_labelled.train_labelled` on the labelled training images."""
        from experiments.train_labelled import train_labelled

        i = inputs
        seen = i.seen_ood() if self.needs_seen_ood(model) and i.seen_ood is not None else None
        train_labelled(
            model,
            i.images,
            i.labels,
            i.settings,
            ood_images=seen,
            perturb=i.perturb,
            flip=i.flip,
            device=i.device,
            seed=i.seed,
            state=i.state,
            on_epoch=i.on_epoch,
            amp=i.amp,
        )

    def extra_artifacts(self, outputs: TrialOutputs) -> dict[str, Any]:
        """``plots/latent_view.png``: the test clouds in 2-D (PCA), coloured by class."""
        from experiments.models.weak_metric import latent_view_figure

        clouds, names = outputs.clouds, outputs.class_names
        labels = np.concatenate([np.full(len(v), names.index(c)) for c, v in clouds.items()])
        return {"plots/latent_view.png": latent_view_figure(np.concatenate(list(clouds.values())), labels, names)}


class FrozenFamily(Family):
    """A backbone that is not trained (pretrained weights from a file or a run, else random init): the
    generic-encoder baseline, scored like every trained model."""

    name = "frozen"
    trains = False

    def tags(self, model: nn.Module) -> dict[str, Any]:
        """``sweeper.random_init``: 1 when no weights were given."""
        return {"sweeper.random_init": int(bool(getattr(model, "random_init", False)))}


class ClusteringFamily(Family):
    """No training: patch features of a backbone, clustered into anomaly types (:mod:`experiments.anomaly_clustering`);
    its trials score themselves (NMI, ARI, F1) on an MVTec-layout dataset."""

    name = "clustering"
    trains = False
    clouds = frozenset({"eval"})
    own_scores = True
    reads_categories = True

    def validate_options(
        self, build: Callable[..., nn.Module], options: Mapping[str, Any], *, image_size: int = 32
    ) -> None:
        """The options over ``CLUSTERING_OPTION_DEFAULTS``: known names, a known backbone and supervision,
        ``tau > 0``, ``train_ratio`` in (0, 1], an odd positive ``patchsize``, an existing weights file (a
        ``trial:`` / ``run:`` reference is checked against the tracking store by the sweeper)."""
        from pathlib import Path

        from experiments.anomaly_clustering import BACKBONES, CLUSTERING_OPTION_DEFAULTS, SUPERVISIONS

        unknown = set(options) - set(CLUSTERING_OPTION_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)}; valid: {', '.join(CLUSTERING_OPTION_DEFAULTS)}")
        o = {**CLUSTERING_OPTION_DEFAULTS, **options}
        w = o["weights"]
        checks = [
            (o["backbone"] in BACKBONES, f"backbone must be one of {', '.join(BACKBONES)}"),
            (o["supervision"] in SUPERVISIONS, f"supervision must be one of {', '.join(SUPERVISIONS)}"),
            (isinstance(o["tau"], (int, float)) and o["tau"] > 0, "tau must be > 0"),
            (isinstance(o["train_ratio"], (int, float)) and 0 < o["train_ratio"] <= 1, "train_ratio must be in (0, 1]"),
            (
                isinstance(o["patchsize"], int) and o["patchsize"] >= 1 and o["patchsize"] % 2 == 1,
                "patchsize must be a positive odd integer",
            ),
            (
                w is None or str(w).startswith(("trial:", "run:")) or Path(str(w)).expanduser().is_file(),
                f"weights file not found: {w}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return None

    def extra_artifacts(self, outputs: TrialOutputs) -> dict[str, Any]:
        """``clustering/alpha.npy`` (the α matrix, float32), ``clustering/grid.json`` (the patch grid) and
        ``plots/alpha.png`` (α overlays of two images per defect type); ``extra`` holds ``result`` (a
        :class:`~experiments.anomaly_clustering.ClusteringResult`), ``images``, ``labels``, ``names`` and ``grid``."""
        import io
        import json

        from experiments.anomaly_clustering import draw_alpha

        e = outputs.extra
        alpha = np.asarray(e["result"].alpha)
        buf = io.BytesIO()
        np.save(buf, alpha.astype(np.float32))
        labels = np.asarray(e["labels"])
        sample = [int(i) for label in np.unique(labels) for i in np.flatnonzero(labels == label)[:2]]
        figure = draw_alpha(e["images"][sample], alpha[sample], e["grid"], titles=[e["names"][i] for i in sample])
        return {
            "clustering/alpha.npy": buf.getvalue(),
            "clustering/grid.json": json.dumps(list(e["grid"]), indent=2, sort_keys=True).encode(),
            "plots/alpha.png": figure,
        }


SSL, LABELLED, FROZEN, CLUSTERING = SSLFamily(), LabelledFamily(), FrozenFamily(), ClusteringFamily()

#: The families by name (the ``family`` param of a trial run names one of these, or ``imported``).
FAMILIES: dict[str, Family] = {f.name: f for f in (SSL, LABELLED, FROZEN, CLUSTERING)}


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry: ``build(mean, std, *, image_size, **options)`` makes a fresh model (``None``: the family builds none); ``family`` says how it
    is trained and scored; ``train_defaults`` are its default optimisation settings (``TrainConfig`` fields)."""

    build: Callable[..., nn.Module] | None
    family: Family
    train_defaults: Mapping[str, Any]
