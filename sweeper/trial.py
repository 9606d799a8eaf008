"""The Ray Tune trainable: train one model on one class, embed every class, bootstrap every metric, log to MLflow.

A plain function of its Tune ``config`` (the grid point: model, train_class, augmentation, seed); the sweep's shared
settings come through ``tune.with_parameters``. It checkpoints every epoch (weights, optimizer, RNG state and the MLflow
run id), so a restarted trial continues its epochs and logs into the same child run.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import tempfile
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray
import torch
from mlflow.tracking import MlflowClient
from ray import tune

from experiments.augment import make_augmentation, ssl_view_transform
from experiments.checkpointing import cpu_state_dict
from experiments.data import DATASETS, ImageDataset
from experiments.data.noise import gaussian_noise_images, synthetic_outlier_images
from experiments.embed import embed_images
from experiments.metrics.collapse import collapse_diagnostics
from experiments.metrics.detection import DETECTION_METRIC_NAMES
from experiments.models import MODELS, build_model
from experiments.models.family import TrainInputs, TrialOutputs
from experiments.precision import deterministic_mode, precision_name
from experiments.train import TrainState
from sweeper import bootstrap_plan, checkpointing, timing, tracking, worker_cache
from sweeper.config import SweepConfig, TrialSpec
from sweeper.eval_sets import PERTURBED_TAG, embed_anomaly_sets
from sweeper.scoring import SCORE_COLUMNS, ScoreSettings, TrialScores, score_trial, trial_score_seed
from sweeper.training_cache import TRAINING_KEY, WEIGHTS_FROM, WEIGHTS_LOGGED, release, training_key, weights_source

log = logging.getLogger(__name__)
timing.imported()


def trial_params(cfg: SweepConfig, spec: TrialSpec) -> dict[str, Any]:
    """The flat parameters logged on a trial's run."""
    s = cfg.settings_for(spec)
    return {
        "model": spec.model,
        "train_class": spec.train_class,
        "augmentation": spec.augmentation,
        "seed": spec.seed,
        "dataset": cfg.dataset.name,
        "image_size": cfg.dataset.image_size,
        "epochs": s.epochs,
        "batch_size": s.batch_size,
        "optimizer": s.optimizer,
        "lr": s.lr,
        "momentum": s.momentum,
        "weight_decay": s.weight_decay,
        "schedule": s.schedule,
        "augmentation_at": cfg.train.augmentation_at,
        "pipeline": cfg.train.pipeline,
        "amp": cfg.train.amp,
        "channels_last": cfg.train.channels_last,
        "compile": cfg.train.compile,
        "deterministic": cfg.train.deterministic,
        "augmentation_params": json.dumps(cfg.augmentations.get(spec.augmentation, {}), sort_keys=True),
        "model_options": json.dumps(cfg.model_options(spec), sort_keys=True, default=list),
        "family": MODELS[spec.model].family.name,
        "train_classes": ",".join(spec.train_classes),
        **{
            f"param.{k}": json.dumps(v, default=list) if isinstance(v, (list, tuple, dict)) else v
            for k, v in spec.params
        },
        **(
            {"ood": json.dumps(cfg.ood.model_dump(mode="json"), sort_keys=True)}
            if any(m in DETECTION_METRIC_NAMES for m in cfg.score.metric_names)
            else {}
        ),
        "embed_layer": cfg.embed.layer,
        "l2_normalize": cfg.embed.l2_normalize,
        "metrics": ",".join(cfg.score.metric_names),
        "n_resamples": cfg.score.n_resamples,
        "sample_size": json.dumps(cfg.score.sample_size),  # 100 or [25, 50]
        "score_seed": trial_score_seed(cfg.score.seed, spec.key),
        "embed_dtype": cfg.embed.dtype,
        "knn_k": cfg.score.knn_k,
        "mtopdiv_backend": cfg.score.mtopdiv_backend,
        "max_train_per_class": cfg.dataset.max_train_per_class,
        "max_test_per_class": cfg.dataset.max_test_per_class,
    }


def embeddings_frame(z: np.ndarray, labels: list[int], class_names: list[str], augmentation: str) -> pd.DataFrame:
    """The embeddings artifact layout: ``index, label, class_name, augmentation, dim_0 … dim_{d-1}``."""
    meta = pd.DataFrame(
        {"index": np.arange(len(z)), "label": labels, "class_name": class_names, "augmentation": augmentation}
    )
    dims = pd.DataFrame(z, columns=[f"dim_{i}" for i in range(z.shape[1])])
    return pd.concat([meta, dims], axis=1)


def _restore(checkpoint: tune.Checkpoint | None) -> tuple[str | None, TrainState | None]:
    if checkpoint is None:
        return None, None
    with checkpoint.as_directory() as d:
        meta = json.loads(Path(d, "meta.json").read_text())
        state = TrainState.from_dict(torch.load(Path(d, "state.pt"), map_location="cpu", weights_only=True))
    return meta["run_id"], state


def run_trial(
    config: dict[str, Any], *, sweep: dict[str, Any], parent_run_id: str, experiment_id: str, tracking_uri: str
) -> None:
    """Tune trainable for one grid point ``config["trial"]`` (keys ``model, train_class, augmentation, seed``)."""
    timer = timing.TrialTimer()
    cfg = SweepConfig.model_validate(sweep)
    spec = TrialSpec.from_dict(config["trial"])
    client = MlflowClient(tracking_uri)
    run_id, state = _restore(tune.get_checkpoint())
    node = {"sweeper.node_id": ray.get_runtime_context().get_node_id(), "sweeper.host": socket.gethostname()}
    if run_id is None:
        run_id = tracking.trial_run(
            client,
            experiment_id,
            parent_run_id,
            spec.key,
            run_name=spec.key.replace("/", " "),
            tags={tracking.SWEEP_NAME: cfg.name, **node},
        )
    else:
        client.update_run(run_id, status="RUNNING")
        tracking.set_tags(client, run_id, {"sweeper.resumed_from_epoch": state.epoch if state else 0, **node})
    try:
        with deterministic_mode(cfg.train.deterministic):
            _run(cfg, spec, client, run_id, state, experiment_id, parent_run_id, timer)
    except BaseException as exc:
        tracking.finish_run(
            client, run_id, ok=False, error="".join(traceback.format_exception_only(type(exc), exc)).strip()
        )
        raise
    tracking.log_metrics(client, run_id, timer.metrics())
    tracking.finish_run(client, run_id, ok=True)


def _device(cfg: SweepConfig) -> torch.device:
    if torch.cuda.is_available() and ray.is_initialized() and ray.get_gpu_ids():
        return torch.device("cuda")
    return torch.device("cpu")


def _run(
    cfg: SweepConfig,
    spec: TrialSpec,
    client: MlflowClient,
    run_id: str,
    state: TrainState | None,
    experiment_id: str,
    parent_run_id: str,
    timer: timing.TrialTimer,
) -> None:
    tracking.log_params(client, run_id, trial_params(cfg, spec))
    timer.lap("setup")
    torch.set_num_threads(max(1, int(cfg.resources.cpus_per_trial)))
    device = _device(cfg)
    # a tag, not a param: a trial resumed on another kind of node may resolve another precision
    tracking.set_tags(client, run_id, {"sweeper.precision": precision_name(cfg.train.amp, device)})
    family = MODELS[spec.model].family
    if family.own_scores:
        from sweeper.clustering_trial import run_clustering

        run_clustering(cfg, spec, client, run_id, device, experiment_id)
        return
    data = worker_cache.cached_dataset(cfg)
    timer.lap("data")
    settings = cfg.settings_for(spec)
    model_options = resolve_model_options(cfg, spec, client, experiment_id)
    mean, std = data.channel_stats()
    torch.manual_seed(spec.seed)  # the initial weights depend on the trial's seed only
    model = build_model(spec.model, mean, std, image_size=cfg.dataset.image_size, **model_options)
    if tags := family.tags(model):
        tracking.set_tags(client, run_id, tags)
    perturb = make_augmentation(spec.augmentation, **cfg.augmentations.get(spec.augmentation, {}))
    at = cfg.train.augmentation_at
    train_perturb = perturb if at in ("train", "both") and spec.augmentation != "none" else None
    eval_perturb = perturb if at in ("eval", "both") and spec.augmentation != "none" else None
    train_images, train_labels = _train_split(data, spec.train_classes)

    on_epoch = checkpointing.epoch_reporter(client, run_id, timer, cfg.train, settings.epochs, state)

    key = training_key(
        model=spec.model,
        options=model_options,
        settings=settings,
        views=cfg.train.views,
        # the resolved precision (amp: null is bf16 on a GPU, fp32 on a CPU), not the raw setting
        pipeline=[cfg.train.pipeline, precision_name(cfg.train.amp, device), cfg.train.flip, cfg.train.deterministic],
        perturb=[train_perturb.name, train_perturb.params] if train_perturb else None,
        train_class=spec.train_class,
        seed=spec.seed,
        data=cfg.result_settings()["dataset"],
        **family.key_parts(ood=cfg.ood.model_dump(mode="json")),
    )
    tracking.set_tags(client, run_id, {TRAINING_KEY: key})
    source = None if state is not None else weights_source(client, experiment_id, parent_run_id, key, run_id)
    if source is None:
        try:
            t = cfg.train
            family.fit(
                model,
                TrainInputs(
                    train_images,
                    train_labels,
                    settings,
                    device=device,
                    seed=spec.seed,
                    state=state,
                    on_epoch=on_epoch,
                    perturb=train_perturb,
                    amp=t.amp,
                    view=ssl_view_transform(cfg.dataset.image_size, **t.views),
                    pipeline=t.pipeline,
                    channels_last=t.channels_last,
                    compile=t.compile,
                    num_workers=t.num_workers,
                    flip=t.flip,
                    seen_ood=lambda: seen_ood_images(cfg, data, train_images),
                ),
            )
        except BaseException:
            release(parent_run_id, key, run_id)
            raise
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(source, "model/weights.pt", tmp)
            weights = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(weights)
        tracking.set_tags(client, run_id, {WEIGHTS_FROM: source})
        log.info("trial %s reuses the weights trained by run %s (same training key)", spec.key, source)
    timer.lap("train")
    tracking.log_files(
        client,
        run_id,
        {
            "weights.pt": tracking.torch_bytes(cpu_state_dict(model)),  # loadable without a GPU
            "model.json": tracking.json_bytes(
                {
                    "model": spec.model,
                    "family": family.name,
                    "options": model_options,
                    "mean": mean,
                    "std": std,
                    "image_size": cfg.dataset.image_size,
                }
            ),
        },
        "model",
    )
    if source is None:  # only a run that trained offers its weights to the others
        tracking.set_tags(client, run_id, {WEIGHTS_LOGGED: "1"})
    timer.lap("log")

    # Embeddings: the clean training images of the training class(es) (the reference cloud) and the held-out test
    # images of every class under the trial's augmentation.
    embed_kw = dict(
        layer=cfg.embed.layer, l2_normalize=cfg.embed.l2_normalize, batch_size=cfg.embed.batch_size, device=device
    )
    embed_kw["dtype"] = cfg.embed.dtype
    reference = embed_images(model, train_images, **embed_kw)
    tracking.log_metrics(client, run_id, collapse_diagnostics(reference))  # embedding.std / .rankme / .dim
    generator = torch.Generator(device=device).manual_seed(spec.seed + 7919)
    clouds = {
        c: embed_images(model, data.images_of(c, "test"), perturb=eval_perturb, generator=generator, **embed_kw)
        for c in cfg.class_names()
    }
    timer.lap("embed")
    names = data.class_names
    tracking.log_parquet(
        client,
        run_id,
        embeddings_frame(reference, train_labels.tolist(), [names[i] for i in train_labels.tolist()], "none"),
        "embeddings/train.parquet",
    )
    test_names = [c for c in clouds for _ in range(len(clouds[c]))]
    tracking.log_parquet(
        client,
        run_id,
        embeddings_frame(
            np.concatenate(list(clouds.values())),
            [data.class_index(c) for c in test_names],
            test_names,
            spec.augmentation if eval_perturb is not None else "none",
        ),
        "embeddings/test.parquet",
    )
    timer.lap("log")
    stats = (float(np.mean(mean)), float(np.mean(std)))
    anomalies = embed_anomaly_sets(model, anomaly_sets(cfg, spec, stats), eval_perturb, spec.seed, **embed_kw)
    perturbed = [*clouds, *anomalies] if eval_perturb is not None else []
    tracking.set_tags(client, run_id, {PERTURBED_TAG: ",".join(perturbed)})
    timer.lap("embed")
    if anomalies:
        anomaly_names = [c for c in anomalies for _ in range(len(anomalies[c]))]
        tracking.log_parquet(
            client,
            run_id,
            embeddings_frame(
                np.concatenate(list(anomalies.values())),
                [-1] * len(anomaly_names),
                anomaly_names,
                spec.augmentation if eval_perturb is not None else "none",
            ),
            "embeddings/anomaly.parquet",
        )
    log_artifacts(client, run_id, family.extra_artifacts(TrialOutputs(clouds, list(names))))
    timer.lap("log")
    score_settings = ScoreSettings(
        metrics=tuple(cfg.score.metric_names),
        n_resamples=cfg.score.n_resamples,
        sample_size=cfg.score.sample_size if isinstance(cfg.score.sample_size, int) else tuple(cfg.score.sample_size),
        seed=trial_score_seed(cfg.score.seed, spec.key),
        knn_k=cfg.score.knn_k,
        mtopdiv_backend=cfg.score.mtopdiv_backend,
        workers=bootstrap_plan.bootstrap_workers(cfg),
        cpus_per_task=cfg.resources.cpus_per_bootstrap_worker,
        device=str(device),  # the trial's GPU if it holds one, else the CPU -- never chosen by a task
        full_cloud=cfg.score.full_cloud if cfg.score.full_cloud == "auto" else tuple(cfg.score.full_cloud),
    )
    scores = score_trial(
        reference,
        train_labels.numpy(),
        clouds,
        anomalies,
        spec.train_classes,
        cfg.ood.seen_classes,
        {c: i for i, c in enumerate(names)},
        score_settings,
    )
    timer.lap("score")
    log_scores(client, run_id, spec.label, spec.train_class, spec.augmentation, scores)
    tune.report({"done_scoring": 1, **{k: v for k, v in scores.summary.items() if k.startswith("baseline_rank.")}})
    timer.lap("log")


def _train_split(data: ImageDataset, classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Training images of ``classes`` in dataset order, with their labels."""
    wanted = torch.tensor([data.class_index(c) for c in classes])
    keep = torch.isin(data.train_labels, wanted)
    return data.train_images[keep], data.train_labels[keep]


def seen_ood_images(cfg: SweepConfig, data: ImageDataset, train_images: torch.Tensor) -> torch.Tensor:
    """The seen out-of-distribution images a mining model trains with: the training images of ``ood.seen_classes``
    and of ``ood.seen_dataset`` (at most ``max_seen_images`` of them, drawn with ``dataset.subset_seed``), then
    ``ood.seen_synthetic`` synthetic outliers derived from ``train_images`` (the trial's own)."""
    o = cfg.ood
    if not o.has_seen_source:
        raise ValueError(
            f"model {cfg.grid.model} mines seen OoD images: set ood.seen_classes, ood.seen_dataset or "
            "ood.seen_synthetic"
        )
    parts = []
    if o.seen_classes:
        parts.append(_train_split(data, o.seen_classes)[0])
    if o.seen_dataset:
        parts.append(DATASETS[o.seen_dataset].load(o.seen_root, cfg.dataset.image_size, False).train_images)
    images = torch.cat(parts) if parts else train_images[:0]
    if o.max_seen_images is not None and len(images) > o.max_seen_images:
        pick = np.sort(
            np.random.default_rng(cfg.dataset.subset_seed).choice(len(images), o.max_seen_images, replace=False)
        )
        images = images[torch.from_numpy(pick)]
    if o.seen_synthetic:
        size = train_images.shape[-1]
        images = torch.cat(
            [
                images,
                synthetic_outlier_images(
                    train_images, o.seen_synthetic, seed=cfg.dataset.subset_seed, block=math.gcd(8, size)
                ),
            ]
        )
    return images


def anomaly_sets(cfg: SweepConfig, spec: TrialSpec, pixel_stats: tuple[float, float]) -> dict[str, torch.Tensor]:
    """The anomaly sets of the detection scores: Gaussian noise images (pixel mean and std from ``ood`` or else
    ``pixel_stats``, the training images') and other datasets' test images (empty when no detection score is
    configured)."""
    if not any(m in DETECTION_METRIC_NAMES for m in cfg.score.metric_names):
        return {}
    o, size = cfg.ood, cfg.dataset.image_size
    sets: dict[str, torch.Tensor] = {}
    if o.noise_images:
        sets["gaussian_noise"] = gaussian_noise_images(
            o.noise_images,
            size,
            seed=spec.seed + 104729,
            mean=pixel_stats[0] if o.noise_mean is None else o.noise_mean,
            std=pixel_stats[1] if o.noise_std is None else o.noise_std,
        )
    for name, root in o.anomaly_datasets.items():
        images = DATASETS[name].load(root, size, False).test_images
        if len(images) > o.max_anomaly_images:
            pick = np.sort(np.random.default_rng(spec.seed).choice(len(images), o.max_anomaly_images, replace=False))
            images = images[torch.from_numpy(pick)]
        sets[name] = images
    return sets


def resolve_model_options(
    cfg: SweepConfig, spec: TrialSpec, client: MlflowClient | None, experiment_id: str | None
) -> dict[str, Any]:
    """The trial's model options with ``backbone_weights`` / ``weights`` given as ``"trial:<trial key>"`` /
    ``"run:<run id>"`` resolved to a local file (the ``model/weights.pt`` that run logged)."""
    options = cfg.model_options(spec)
    for key in ("backbone_weights", "weights"):
        ref = options.get(key)
        if isinstance(ref, str) and ref.startswith(("trial:", "run:")):
            if client is None:
                raise ValueError(f"{key} from a run needs the tracking store")
            source = tracking.resolve_weights_run(client, experiment_id, ref)
            path = Path(tempfile.mkdtemp(prefix="sweeper-backbone-"))
            options[key] = client.download_artifacts(source, "model/weights.pt", str(path))
    return options


def log_artifacts(client: MlflowClient, run_id: str, artifacts: dict[str, Any]) -> None:
    """Log a family's extra artifacts: ``bytes`` as the file at its path, anything else as a figure (PNG)."""
    for path, item in artifacts.items():
        if isinstance(item, bytes):
            folder, name = path.rsplit("/", 1) if "/" in path else ("", path)
            tracking.log_files(client, run_id, {name: item}, folder or None)
        else:
            tracking.log_figure(client, run_id, item, path)


def log_scores(
    client: MlflowClient,
    run_id: str,
    model: str,
    train_class: str,
    augmentation: str,
    scores: TrialScores,
    previous: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> None:
    """Log a trial's score table (parquet + MLflow table), raw resamples and summary metrics; with ``previous``
    (the run's existing table and resamples) the new rows are appended to them."""
    new = scores.table.assign(model=model, train_class=train_class, augmentation=augmentation)[SCORE_COLUMNS]
    table, raw = new, scores.raw
    if previous is not None:
        table = pd.concat([previous[0], new], ignore_index=True)
        raw = pd.concat([previous[1], raw], ignore_index=True)
    tracking.log_parquet(client, run_id, table, "scores/scores.parquet")
    tracking.log_parquet(client, run_id, raw, "scores/bootstrap.parquet")
    client.log_table(run_id, data=new, artifact_file="scores/scores_table.json")  # MLflow appends to a table
    tracking.log_metrics(client, run_id, scores.summary)
