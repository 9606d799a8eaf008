"""The stages of a trial, shared by every family: ``load → train or reuse → embed → score → log``.

:func:`run_stages` runs them for one grid point (a family whose trials score themselves, the anomaly-clustering one,
runs its own stages, :func:`sweeper.clustering_trial.run_clustering`); ``sweeper rescore`` reuses :func:`score`
and :func:`log` on the clouds a finished trial logged. The stages ask the trial's family (``MODELS[model].family``)
what to do; none compares a family's name.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from mlflow.tracking import MlflowClient
from ray import tune

from experiments.augment import Perturbation, make_augmentation, ssl_view_transform
from experiments.data import ImageDataset
from experiments.embed import embed_images
from experiments.metrics.collapse import collapse_diagnostics
from experiments.models import MODELS, Family, build_model
from experiments.models.family import TrainInputs, TrialOutputs
from experiments.precision import precision_name
from experiments.train import TrainSettings, TrainState
from sweeper import artifacts, bootstrap_plan, checkpointing, timing, tracking, worker_cache
from sweeper.config import SweepConfig, TrialSpec
from sweeper.eval_sets import PERTURBED_TAG, embed_anomaly_sets
from sweeper.scoring import ScoreSettings, TrialScores, score_trial, trial_score_seed
from sweeper.training_cache import TRAINING_KEY, WEIGHTS_FROM, WEIGHTS_LOGGED, release, training_key, weights_source
from sweeper.trial_data import anomaly_sets, resolve_model_options, seen_ood_images, train_split
from sweeper.trial_params import checkpoint_params, resize_params

logger = logging.getLogger(__name__)


@dataclass
class TrialContext:
    """Where a trial runs and logs: its config and grid point, the tracking client and run, the device, the sweep's
    experiment and parent run, and the phase timer."""

    cfg: SweepConfig
    spec: TrialSpec
    client: MlflowClient
    run_id: str
    device: torch.device
    experiment_id: str
    parent_run_id: str
    timer: timing.TrialTimer

    @property
    def family(self) -> Family:
        return MODELS[self.spec.model].family


@dataclass
class Loaded:
    """The load stage's output: the data, the built model and everything its training and embedding need."""

    data: ImageDataset
    model: torch.nn.Module
    options: dict[str, Any]
    settings: TrainSettings
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    train_perturb: Perturbation | None
    eval_perturb: Perturbation | None


@dataclass
class Embedded:
    """The embed stage's output: the reference cloud, the evaluation clouds and the anomaly sets (by name)."""

    reference: np.ndarray
    clouds: dict[str, np.ndarray]
    anomalies: dict[str, np.ndarray]


def run_stages(ctx: TrialContext, state: TrainState | None) -> None:
    """One trial: ``load → train or reuse → embed → score → log`` (or the family's own stages)."""
    if ctx.family.own_scores:
        from sweeper.clustering_trial import run_clustering

        run_clustering(ctx.cfg, ctx.spec, ctx.client, ctx.run_id, ctx.device, ctx.experiment_id)
        return
    loaded = load(ctx)
    train_or_reuse(ctx, loaded, state)
    embedded = embed(ctx, loaded)
    index = {c: i for i, c in enumerate(loaded.data.class_names)}
    spec = ctx.spec
    scores = score(
        embedded, loaded.train_labels.numpy(), spec.train_classes, ctx.cfg.ood.seen_classes, index, trial_scoring(ctx)
    )
    ctx.timer.lap("score")
    log(ctx.client, ctx.run_id, spec.label, spec.train_class, spec.augmentation, scores)
    ctx.timer.lap("log")


def load(ctx: TrialContext) -> Loaded:
    """The dataset (cached per worker), the model built with the trial's seed (``torch.manual_seed(seed)``, so the
    initial weights depend on the seed only) and its resolved options, the training split of the training
    class(es), and the trial's perturbation where ``train.augmentation_at`` applies it (training and/or evaluation)."""
    cfg, spec = ctx.cfg, ctx.spec
    data = worker_cache.cached_dataset(cfg)
    ctx.timer.lap("data")
    options = resolve_model_options(cfg, spec, ctx.client, ctx.experiment_id)
    mean, std = data.channel_stats()
    torch.manual_seed(spec.seed)
    model = build_model(spec.model, mean, std, image_size=cfg.dataset.image_size, **options)
    if tags := ctx.family.tags(model):
        tracking.set_tags(ctx.client, ctx.run_id, tags)
    if params := {**checkpoint_params(model), **resize_params(cfg, data)}:
        tracking.log_params(ctx.client, ctx.run_id, params)
    perturb = make_augmentation(spec.augmentation, **cfg.augmentations.get(spec.augmentation, {}))
    at, on = cfg.train.augmentation_at, spec.augmentation != "none"
    images, labels = train_split(data, spec.train_classes)
    return Loaded(
        data,
        model,
        options,
        cfg.settings_for(spec),
        mean,
        std,
        images,
        labels,
        perturb if on and at in ("train", "both") else None,
        perturb if on and at in ("eval", "both") else None,
    )


def trial_training_key(ctx: TrialContext, loaded: Loaded) -> str:
    """The training-cache key: model, options, settings, views, the resolved precision (``amp: null`` is bf16 on a
    GPU, fp32 on a CPU), the training perturbation, class, seed and data, and the family's own parts."""
    cfg, spec, p = ctx.cfg, ctx.spec, loaded.train_perturb
    return training_key(
        model=spec.model,
        options=loaded.options,
        settings=loaded.settings,
        views=cfg.train.views,
        pipeline=[
            cfg.train.pipeline,
            precision_name(cfg.train.amp, ctx.device),
            cfg.train.flip,
            cfg.train.deterministic,
        ],
        perturb=[p.name, p.params] if p else None,
        train_class=spec.train_class,
        seed=spec.seed,
        data=cfg.result_settings()["dataset"],
        **ctx.family.key_parts(ood=cfg.ood.model_dump(mode="json")),
    )


def train_or_reuse(ctx: TrialContext, loaded: Loaded, state: TrainState | None) -> None:
    """Train the model by its family (from ``state`` when resuming) unless a trial of the sweep with the same
    training key logged weights (then load those, tagged ``sweeper.weights_from``); log ``model/``."""
    cfg, spec, client, run_id = ctx.cfg, ctx.spec, ctx.client, ctx.run_id
    model, t = loaded.model, cfg.train
    on_epoch = checkpointing.epoch_reporter(client, run_id, ctx.timer, t, loaded.settings.epochs, state)
    key = trial_training_key(ctx, loaded)
    tracking.set_tags(client, run_id, {TRAINING_KEY: key})
    source = None if state is not None else weights_source(client, ctx.experiment_id, ctx.parent_run_id, key, run_id)
    if source is None:
        inputs = TrainInputs(
            loaded.train_images,
            loaded.train_labels,
            loaded.settings,
            device=ctx.device,
            seed=spec.seed,
            state=state,
            on_epoch=on_epoch,
            perturb=loaded.train_perturb,
            amp=t.amp,
            view=ssl_view_transform(cfg.dataset.image_size, **t.views),
            pipeline=t.pipeline,
            channels_last=t.channels_last,
            compile=t.compile,
            num_workers=t.num_workers,
            flip=t.flip,
            seen_ood=lambda: seen_ood_images(cfg, loaded.data, loaded.train_images),
        )
        try:
            ctx.family.fit(model, inputs)
        except BaseException:
            release(ctx.parent_run_id, key, run_id)
            raise
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(source, artifacts.WEIGHTS, tmp)
            weights = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(weights)
        tracking.set_tags(client, run_id, {WEIGHTS_FROM: source})
        logger.info("trial %s reuses the weights trained by run %s (same training key)", spec.key, source)
    ctx.timer.lap("train")
    info = artifacts.model_info(
        spec.model, ctx.family.name, loaded.options, loaded.mean, loaded.std, cfg.dataset.image_size
    )
    artifacts.log_model(client, run_id, model, info)
    if source is None:  # only a run that trained offers its weights to the others
        tracking.set_tags(client, run_id, {WEIGHTS_LOGGED: "1"})
    ctx.timer.lap("log")


def embed(ctx: TrialContext, loaded: Loaded) -> Embedded:
    """Embed the clean training images of the training class(es) (the reference cloud; its collapse diagnostics
    ``embedding.std`` / ``.rankme`` / ``.dim`` are logged), the held-out test images of every evaluated class and
    the anomaly sets, the last two under the evaluation perturbation (generators seeded from the trial's seed);
    log the embeddings frames, the perturbed sets' tag and the family's extra artifacts."""
    cfg, spec, client, run_id, model = ctx.cfg, ctx.spec, ctx.client, ctx.run_id, loaded.model
    kw: dict[str, Any] = dict(
        layer=cfg.embed.layer, l2_normalize=cfg.embed.l2_normalize, batch_size=cfg.embed.batch_size, device=ctx.device
    )
    kw["dtype"] = cfg.embed.dtype
    reference = embed_images(model, loaded.train_images, **kw)
    tracking.log_metrics(client, run_id, collapse_diagnostics(reference))
    generator = torch.Generator(device=ctx.device).manual_seed(spec.seed + 7919)
    eval_perturb, data = loaded.eval_perturb, loaded.data
    clouds = {
        c: embed_images(model, data.images_of(c, "test"), perturb=eval_perturb, generator=generator, **kw)
        for c in cfg.class_names()
    }
    stats = (float(np.mean(loaded.mean)), float(np.mean(loaded.std)))
    anomalies = embed_anomaly_sets(model, anomaly_sets(cfg, spec, stats), eval_perturb, spec.seed, **kw)
    ctx.timer.lap("embed")
    names, shown = data.class_names, spec.augmentation if eval_perturb is not None else "none"
    labels = loaded.train_labels.tolist()
    reference_frame = artifacts.embeddings_frame(reference, labels, [names[i] for i in labels], "none")
    tracking.log_parquet(client, run_id, reference_frame, artifacts.TRAIN_EMBEDDINGS)
    test_names = [c for c in clouds for _ in range(len(clouds[c]))]
    test_frame = artifacts.embeddings_frame(
        np.concatenate(list(clouds.values())), [data.class_index(c) for c in test_names], test_names, shown
    )
    tracking.log_parquet(client, run_id, test_frame, artifacts.TEST_EMBEDDINGS)
    tracking.set_tags(
        client, run_id, {PERTURBED_TAG: ",".join([*clouds, *anomalies] if eval_perturb is not None else [])}
    )
    if anomalies:
        anomaly_names = [c for c in anomalies for _ in range(len(anomalies[c]))]
        frame = artifacts.embeddings_frame(
            np.concatenate(list(anomalies.values())), [-1] * len(anomaly_names), anomaly_names, shown
        )
        tracking.log_parquet(client, run_id, frame, artifacts.ANOMALY_EMBEDDINGS)
    artifacts.log_artifacts(client, run_id, ctx.family.extra_artifacts(TrialOutputs(clouds, list(names))))
    ctx.timer.lap("log")
    return Embedded(reference, clouds, anomalies)


def trial_scoring(ctx: TrialContext) -> ScoreSettings:
    """The trial's :class:`ScoreSettings`: the configured metrics and bootstrap, the trial's score seed
    (:func:`trial_score_seed`), its bootstrap workers and the trial's device (its GPU if it holds one)."""
    cfg, s = ctx.cfg, ctx.cfg.score
    return ScoreSettings(
        metrics=tuple(s.metric_names),
        n_resamples=s.n_resamples,
        sample_size=s.sample_size if isinstance(s.sample_size, int) else tuple(s.sample_size),
        seed=trial_score_seed(s.seed, ctx.spec.key),
        knn_k=s.knn_k,
        metric_options=s.metric_options,
        workers=bootstrap_plan.bootstrap_workers(cfg),
        cpus_per_task=cfg.resources.cpus_per_bootstrap_worker,
        device=str(ctx.device),  # never chosen by a task
        full_cloud=s.full_cloud if s.full_cloud == "auto" else tuple(s.full_cloud),
    )


def score(
    embedded: Embedded,
    reference_labels: np.ndarray,
    train_classes: list[str],
    seen_classes: list[str],
    class_index: dict[str, int],
    settings: ScoreSettings,
) -> TrialScores:
    """Every metric of ``settings`` on the clouds (:func:`sweeper.scoring.score_trial`): each evaluated cloud
    against the reference cloud (labels ``reference_labels``), bootstrapped; the detection scores with the anomaly
    sets and the ``seen_classes``; ``class_index`` maps a class name to its label."""
    return score_trial(
        embedded.reference,
        reference_labels,
        embedded.clouds,
        embedded.anomalies,
        train_classes,
        seen_classes,
        class_index,
        settings,
    )


def log(
    client: MlflowClient,
    run_id: str,
    label: str,
    train_class: str,
    augmentation: str,
    scores: TrialScores,
    previous: tuple[Any, Any] | None = None,
    report: bool = True,
) -> None:
    """Log the score tables and summary metrics under the trial's ``label`` (its model, or variant),
    ``train_class`` and ``augmentation`` (:func:`sweeper.artifacts.log_scores`; appended to ``previous`` when
    rescoring) and, inside a Tune trial (``report``), report ``done_scoring`` with the baseline ranks."""
    artifacts.log_scores(client, run_id, label, train_class, augmentation, scores, previous)
    if report:
        tune.report({"done_scoring": 1, **{k: v for k, v in scores.summary.items() if k.startswith("baseline_rank.")}})
