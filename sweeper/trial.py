"""The Ray Tune trainable: train one model on one class, embed every class, bootstrap every metric, log to MLflow.

A plain function of its Tune ``config`` (the grid point: model, train_class, augmentation, seed); the sweep's shared
settings come through ``tune.with_parameters``. It checkpoints every epoch (weights, optimizer, RNG state and the MLflow
run id), so a restarted trial continues its epochs and logs into the same child run.
"""

from __future__ import annotations

import json
import logging
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
from experiments.embed import embed_images
from experiments.models import build_model
from experiments.train import EpochResult, TrainState, train
from sweeper import tracking
from sweeper.scoring import SCORE_COLUMNS, ScoreSettings, TrialScores, score_clouds
from sweeper.config import SweepConfig, TrialSpec, load_dataset
from sweeper.training_cache import TRAINING_KEY, WEIGHTS_FROM, WEIGHTS_LOGGED, release, training_key, weights_source

log = logging.getLogger(__name__)



def trial_params(cfg: SweepConfig, spec: TrialSpec) -> dict[str, Any]:
    """The flat parameters logged on a trial's run."""
    s = cfg.train.settings_for(spec.model)
    return {
        "model": spec.model, "train_class": spec.train_class, "augmentation": spec.augmentation, "seed": spec.seed,
        "dataset": cfg.dataset.name, "image_size": cfg.dataset.image_size, "epochs": s.epochs,
        "batch_size": s.batch_size, "optimizer": s.optimizer, "lr": s.lr, "momentum": s.momentum,
        "weight_decay": s.weight_decay, "schedule": s.schedule, "augmentation_at": cfg.train.augmentation_at,
        "augmentation_params": json.dumps(cfg.augmentations.get(spec.augmentation, {}), sort_keys=True),
        "model_options": json.dumps(cfg.train.model_options.get(spec.model, {}), sort_keys=True),
        "embed_layer": cfg.embed.layer, "l2_normalize": cfg.embed.l2_normalize,
        "metrics": ",".join(cfg.score.metric_names), "n_resamples": cfg.score.n_resamples,
        "sample_size": cfg.score.sample_size, "score_seed": cfg.score.seed, "knn_k": cfg.score.knn_k,
        "mtopdiv_backend": cfg.score.mtopdiv_backend,
        "max_train_per_class": cfg.dataset.max_train_per_class, "max_test_per_class": cfg.dataset.max_test_per_class,
    }


def embeddings_frame(z: np.ndarray, labels: list[int], class_names: list[str], augmentation: str) -> pd.DataFrame:
    """The embeddings artifact layout: ``index, label, class_name, augmentation, dim_0 … dim_{d-1}``."""
    meta = pd.DataFrame({"index": np.arange(len(z)), "label": labels, "class_name": class_names,
                         "augmentation": augmentation})
    dims = pd.DataFrame(z, columns=[f"dim_{i}" for i in range(z.shape[1])])
    return pd.concat([meta, dims], axis=1)


def _restore(checkpoint: tune.Checkpoint | None) -> tuple[str | None, TrainState | None]:
    if checkpoint is None:
        return None, None
    with checkpoint.as_directory() as d:
        meta = json.loads(Path(d, "meta.json").read_text())
        state = TrainState.from_dict(torch.load(Path(d, "state.pt"), weights_only=True))
    return meta["run_id"], state


def run_trial(config: dict[str, Any], *, sweep: dict[str, Any], parent_run_id: str, experiment_id: str,
              tracking_uri: str) -> None:
    """Tune trainable for one grid point ``config["trial"]`` (keys ``model, train_class, augmentation, seed``)."""
    cfg = SweepConfig.model_validate(sweep)
    t = config["trial"]
    spec = TrialSpec(t["model"], str(t["train_class"]), t["augmentation"], int(t["seed"]))
    client = MlflowClient(tracking_uri)
    run_id, state = _restore(tune.get_checkpoint())
    node = {"sweeper.node_id": ray.get_runtime_context().get_node_id(), "sweeper.host": socket.gethostname()}
    if run_id is None:
        run_id = tracking.trial_run(client, experiment_id, parent_run_id, spec.key,
                                    run_name=spec.key.replace("/", " "), tags={tracking.SWEEP_NAME: cfg.name, **node})
    else:
        client.update_run(run_id, status="RUNNING")
        tracking.set_tags(client, run_id, {"sweeper.resumed_from_epoch": state.epoch if state else 0, **node})
    try:
        _run(cfg, spec, client, run_id, state, experiment_id, parent_run_id)
    except BaseException as exc:
        tracking.finish_run(client, run_id, ok=False,
                            error="".join(traceback.format_exception_only(type(exc), exc)).strip())
        raise
    tracking.finish_run(client, run_id, ok=True)


def _device(cfg: SweepConfig) -> torch.device:
    if torch.cuda.is_available() and ray.is_initialized() and ray.get_gpu_ids():
        return torch.device("cuda")
    return torch.device("cpu")


def _run(cfg: SweepConfig, spec: TrialSpec, client: MlflowClient, run_id: str, state: TrainState | None,
         experiment_id: str, parent_run_id: str) -> None:
    tracking.log_params(client, run_id, trial_params(cfg, spec))
    torch.set_num_threads(max(1, int(cfg.resources.cpus_per_trial)))
    device = _device(cfg)
    data = load_dataset(cfg)
    settings = cfg.train.settings_for(spec.model)
    model_options = cfg.train.model_options.get(spec.model, {})
    mean, std = data.channel_stats()
    model = build_model(spec.model, mean, std, **model_options)
    perturb = make_augmentation(spec.augmentation, **cfg.augmentations.get(spec.augmentation, {}))
    at = cfg.train.augmentation_at
    train_perturb = perturb if at in ("train", "both") and spec.augmentation != "none" else None
    eval_perturb = perturb if at in ("eval", "both") and spec.augmentation != "none" else None

    def on_epoch(result: EpochResult, snapshot: Any) -> None:
        metrics = {"loss": result.loss, "images_per_second": result.images_per_second, "lr": result.lr,
                   "epoch_seconds": result.seconds}
        tracking.log_metrics(client, run_id, metrics, step=result.epoch)
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(snapshot().to_dict(), Path(tmp, "state.pt"))
            Path(tmp, "meta.json").write_text(json.dumps({"run_id": run_id, "epoch": result.epoch}))
            tune.report({"epoch": result.epoch, **metrics}, checkpoint=tune.Checkpoint.from_directory(tmp))

    key = training_key(model=spec.model, options=model_options, settings=settings, views=cfg.train.views,
                       perturb=[train_perturb.name, train_perturb.params] if train_perturb else None,
                       train_class=spec.train_class, seed=spec.seed, data=cfg.result_settings()["dataset"])
    tracking.set_tags(client, run_id, {TRAINING_KEY: key})
    source = None if state is not None else weights_source(client, experiment_id, parent_run_id, key, run_id)
    if source is None:
        try:
            train(model, data.images_of(spec.train_class, "train"), settings,
                  ssl_view_transform(cfg.dataset.image_size, **cfg.train.views), perturb=train_perturb, device=device,
                  seed=spec.seed, state=state, on_epoch=on_epoch)
        except BaseException:
            release(parent_run_id, key, run_id)
            raise
    else:
        with tempfile.TemporaryDirectory() as tmp:
            weights = torch.load(client.download_artifacts(source, "model/weights.pt", tmp), weights_only=True)
        model.load_state_dict(weights)
        tracking.set_tags(client, run_id, {WEIGHTS_FROM: source})
        log.info("trial %s reuses the weights trained by run %s (same training key)", spec.key, source)

    tracking.log_files(client, run_id, {
        "weights.pt": tracking.torch_bytes(model.state_dict()),
        "model.json": tracking.json_bytes({"model": spec.model, "backbone": "resnet20", "options": model_options,
                                           "mean": mean, "std": std, "image_size": cfg.dataset.image_size}),
    }, "model")
    if source is None:  # only a run that trained offers its weights to the others
        tracking.set_tags(client, run_id, {WEIGHTS_LOGGED: "1"})

    # Embeddings: the clean training images of the training class (the reference cloud) and the held-out test
    # images of every class under the trial's augmentation.
    embed_kw = dict(layer=cfg.embed.layer, l2_normalize=cfg.embed.l2_normalize, batch_size=cfg.embed.batch_size,
                    device=device)
    reference = embed_images(model, data.images_of(spec.train_class, "train"), **embed_kw)
    generator = torch.Generator(device=device).manual_seed(spec.seed + 7919)
    clouds = {c: embed_images(model, data.images_of(c, "test"), perturb=eval_perturb, generator=generator, **embed_kw)
              for c in cfg.class_names()}
    train_label = data.class_index(spec.train_class)
    tracking.log_parquet(client, run_id, embeddings_frame(
        reference, [train_label] * len(reference), [spec.train_class] * len(reference), "none"),
        "embeddings/train.parquet")
    test_names = [c for c in clouds for _ in range(len(clouds[c]))]
    tracking.log_parquet(client, run_id, embeddings_frame(
        np.concatenate(list(clouds.values())), [data.class_index(c) for c in test_names], test_names,
        spec.augmentation if eval_perturb is not None else "none"), "embeddings/test.parquet")

    score_settings = ScoreSettings(
        tuple(cfg.score.metric_names), cfg.score.n_resamples, cfg.score.sample_size, cfg.score.seed, cfg.score.knn_k,
        cfg.score.mtopdiv_backend, cfg.resources.bootstrap_workers, cfg.resources.cpus_per_bootstrap_worker)
    scores = score_clouds(reference, clouds, spec.train_class, score_settings)
    log_scores(client, run_id, spec.model, spec.train_class, spec.augmentation, scores)
    tune.report({"done_scoring": 1, **{k: v for k, v in scores.summary.items() if k.startswith("baseline_rank.")}})


def log_scores(client: MlflowClient, run_id: str, model: str, train_class: str, augmentation: str,
               scores: TrialScores, previous: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> None:
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
