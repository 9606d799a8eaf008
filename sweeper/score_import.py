"""``sweeper score``: score embeddings made anywhere (another codebase, a pretrained encoder, a paper's released files)
exactly as a trial scores its own, and log them exactly like a trial.

A set is one training class's reference cloud (a file) and the evaluation clouds (a folder with one file per class,
or one table with a class column, or one ``.npz``; see :mod:`experiments.embedding_files`). The baseline is the
evaluation cloud named like the set's ``train_class``. Every set becomes one child run (trial key
``model=M/train_class=C/augmentation=A/seed=S``) under one parent run per sweep, scheduled as a Ray task; its run
holds the embeddings in the project's layout (``embeddings/train.parquet``, ``embeddings/test.parquet``), the score
table, the bootstrap resamples and the summary metrics, so ``sweeper report``, ``sweeper rescore`` and
``analysis.load_scores`` read it unchanged. Params name the source files and a SHA-256 of each.

Imported embeddings are scored as stored; ``embed.l2_normalize: true`` normalises every point first (default off
here, unlike a trained trial, whose backbone features are normalised by default).

Every file is read and checked before Ray starts and before any MLflow run exists; bad input is a
:class:`~sweeper.config.ConfigError` (one line, exit 2). Running the same sweep again skips the sets that FINISHED.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import Field, ValidationError

from experiments.embedding_files import EmbeddingFileError, check_dimensions, read_cloud, read_clouds
from experiments.file_hash import file_sha256
from sweeper.config import (
    ConfigError,
    ResourcesConfig,
    ScoreConfig,
    StrictModel,
    TrackingConfig,
    apply_overrides,
    format_validation_error,
    read_yaml,
)

log = logging.getLogger(__name__)


class EmbeddingSet(StrictModel):
    """One set to score: a reference cloud file and the evaluation clouds of every class."""

    model: str = Field("imported", min_length=1)
    train_class: str = Field(min_length=1)
    reference: str
    eval: str
    augmentation: str = "none"
    seed: int = 0

    @property
    def key(self) -> str:
        """The trial key of the set's run (the same shape as a trained trial's)."""
        return f"model={self.model}/train_class={self.train_class}/augmentation={self.augmentation}/seed={self.seed}"


class ImportEmbedConfig(StrictModel):
    """``l2_normalize``: normalise every imported point to unit length first (default off: scored as stored)."""

    l2_normalize: bool = False


class ScoreSweepConfig(StrictModel):
    """A ``sweeper score`` config: the sets, and the same ``score``, ``resources`` and ``tracking`` sections as a
    sweep."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    experiment: str = Field(min_length=1)
    embeddings: list[EmbeddingSet] = Field(min_length=1)
    embed: ImportEmbedConfig = Field(default_factory=ImportEmbedConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)


@dataclass
class LoadedSet:
    """A set's clouds, read and checked, with the hashes of its source files."""

    spec: EmbeddingSet
    reference: np.ndarray
    clouds: dict[str, np.ndarray]
    sources: dict[str, str]


def parse_score_config(raw: dict[str, Any], base_dir: str | os.PathLike = ".") -> ScoreSweepConfig:
    """Validate a ``sweeper score`` config; relative file paths are taken from ``base_dir`` (the config's folder)."""
    sets = raw.get("embeddings")
    if isinstance(sets, list):
        raw = {**raw, "embeddings": [_resolved(s, base_dir) for s in sets]}
    try:
        cfg = ScoreSweepConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    keys = [s.key for s in cfg.embeddings]
    dup = next((k for k in keys if keys.count(k) > 1), None)
    if dup:
        raise ConfigError(f"embeddings: two sets have the same key {dup!r}; give them another model, class or seed")
    return cfg


def _resolved(entry: Any, base_dir: str | os.PathLike) -> Any:
    """A set's ``reference`` and ``eval`` paths taken from ``base_dir`` when relative."""
    if not isinstance(entry, dict):
        return entry
    return {
        **entry,
        **{k: str(Path(base_dir, entry[k])) for k in ("reference", "eval") if isinstance(entry.get(k), str)},
    }


def load_score_config(path: str | os.PathLike, overrides: list[str] | None = None) -> ScoreSweepConfig:
    """Read, override and validate a ``sweeper score`` YAML config."""
    return parse_score_config(apply_overrides(read_yaml(path), overrides or []), Path(path).parent)


def shortcut_config(args: Any) -> ScoreSweepConfig:
    """The config of ``sweeper score --reference REF --eval EVAL --train-class C``: one set."""
    raw = {
        "name": args.name or f"score-{Path(args.eval).stem or 'eval'}",
        "experiment": args.experiment or "sweeper-score",
        "embeddings": [
            {
                "model": args.model or "imported",
                "train_class": args.train_class,
                "reference": args.reference,
                "eval": args.eval,
            }
        ],
    }
    return parse_score_config(apply_overrides(raw, args.overrides or []), ".")


def _sources(path: str) -> dict[str, str]:
    """SHA-256 of a source file, or of every embedding file of a folder, by path."""
    p = Path(path)
    files = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
    return {str(f): file_sha256(f) for f in files if f.suffix.lower() in (".csv", ".parquet", ".npy", ".npz")}


def load_set(spec: EmbeddingSet, l2_normalize: bool) -> LoadedSet:
    """Read and check one set's files (see the module docstring); optionally L2-normalise every point."""
    try:
        reference = read_cloud(spec.reference)
        clouds = read_clouds(spec.eval)
        check_dimensions(clouds, spec.eval, reference)
    except (EmbeddingFileError, FileNotFoundError) as exc:
        raise ConfigError(str(exc)) from None
    if spec.train_class not in clouds:
        raise ConfigError(
            f"train_class {spec.train_class!r} is not among the evaluation classes of {spec.eval}: {', '.join(sorted(clouds))}"
        )
    if l2_normalize:
        reference = _normalised(reference, spec.reference)
        clouds = {c: _normalised(x, f"{spec.eval} [{c}]") for c, x in clouds.items()}
    return LoadedSet(spec, reference, clouds, {**_sources(spec.reference), **_sources(spec.eval)})


def _normalised(x: np.ndarray, where: str) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ConfigError(f"{where}: row {int(np.argmin(norms[:, 0]))} is all zeros and cannot be L2-normalised")
    return x / norms


def check_sample_size(cfg: ScoreSweepConfig, sets: list[LoadedSet]) -> None:
    """The bootstrap's ``sample_size`` must not exceed any cloud (draws are with replacement, but a sample larger
    than its cloud is a config mistake)."""
    for s in sets:
        for name, x in {"reference": s.reference, **s.clouds}.items():
            if max(cfg.score.sample_sizes) > len(x):
                raise ConfigError(
                    f"score.sample_size={max(cfg.score.sample_sizes)} is larger than the {name!r} cloud of set "
                    f"{s.spec.key} ({len(x)} points)"
                )


def prepare(cfg: ScoreSweepConfig) -> list[LoadedSet]:
    """Every check that can fail on bad input: metric names, files, classes, sizes. Reads files only."""
    from sweeper.config import known_scores
    from sweeper.config.validate import check_metric_options

    bad = [m for m in cfg.score.metric_names if m not in known_scores()]
    if bad:
        raise ConfigError(f"unknown metric {bad[0]!r}; valid: {', '.join(known_scores())}")
    check_metric_options(cfg.score)
    sets = [load_set(s, cfg.embed.l2_normalize) for s in cfg.embeddings]
    check_sample_size(cfg, sets)
    return sets


def score_settings(cfg: ScoreSweepConfig, n_clouds: int, key: str) -> Any:
    """The :class:`~sweeper.scoring.ScoreSettings` of a score sweep, by keyword (``bootstrap_workers: auto``: in the
    set's own task when the bootstrap is small, as a trial; :mod:`sweeper.bootstrap_plan`)."""
    from sweeper.bootstrap_plan import workers_for
    from sweeper.scoring import ScoreSettings, trial_score_seed

    s = cfg.score

    return ScoreSettings(
        metrics=tuple(cfg.score.metric_names),
        n_resamples=cfg.score.n_resamples,
        sample_size=cfg.score.sample_size,
        seed=trial_score_seed(cfg.score.seed, key),
        full_cloud=s.full_cloud if s.full_cloud == "auto" else tuple(s.full_cloud),
        knn_k=cfg.score.knn_k,
        metric_options=cfg.score.metric_options,
        workers=workers_for(cfg.resources.bootstrap_workers, n_clouds, s.n_resamples, s.sample_size, s.metric_names),
        cpus_per_task=cfg.resources.cpus_per_bootstrap_worker,
    )


def set_params(cfg: ScoreSweepConfig, loaded: LoadedSet) -> dict[str, Any]:
    """The flat params of a set's run: what a trial logs that applies here, plus the sources and their hashes."""
    from sweeper.scoring import trial_score_seed

    s = loaded.spec
    return {
        "model": s.model,
        "train_class": s.train_class,
        "augmentation": s.augmentation,
        "seed": s.seed,
        "family": "imported",
        "train_classes": s.train_class,
        "source.reference": s.reference,
        "source.eval": s.eval,
        "source.sha256": json.dumps(loaded.sources, sort_keys=True),
        "l2_normalize": cfg.embed.l2_normalize,
        "metrics": ",".join(cfg.score.metric_names),
        "n_resamples": cfg.score.n_resamples,
        "sample_size": cfg.score.sample_size,
        "score_seed": trial_score_seed(cfg.score.seed, s.key),
        "knn_k": cfg.score.knn_k,
        "mtopdiv_backend": cfg.score.mtopdiv_backend,
        **cfg.score.option_params(),
        "ood": json.dumps({"seen_classes": []}),
    }


def score_set(cfg: ScoreSweepConfig, loaded: LoadedSet, client: Any, run_id: str) -> None:
    """Log one set's embeddings, score them like a trial (:func:`sweeper.scoring.score_trial`) and log the scores."""
    from sweeper import tracking
    from sweeper.artifacts import embeddings_frame, log_scores
    from sweeper.scoring import score_trial

    s = loaded.spec
    tracking.log_params(client, run_id, set_params(cfg, loaded))
    names = sorted(loaded.clouds)
    index = {c: i for i, c in enumerate(names)}
    ref_labels = np.full(len(loaded.reference), index[s.train_class])
    tracking.log_parquet(
        client,
        run_id,
        embeddings_frame(loaded.reference, ref_labels.tolist(), [s.train_class] * len(ref_labels), "none"),
        "embeddings/train.parquet",
    )
    test_names = [c for c in names for _ in range(len(loaded.clouds[c]))]
    tracking.log_parquet(
        client,
        run_id,
        embeddings_frame(
            np.concatenate([loaded.clouds[c] for c in names]), [index[c] for c in test_names], test_names, "none"
        ),
        "embeddings/test.parquet",
    )
    scores = score_trial(
        loaded.reference,
        ref_labels,
        {c: loaded.clouds[c] for c in names},
        {},
        [s.train_class],
        [],
        index,
        score_settings(cfg, len(names), s.key),
    )
    log_scores(client, run_id, s.model, s.train_class, s.augmentation, scores)


def _score_task(cfg_json: dict, loaded: LoadedSet, tracking_uri: str, experiment_id: str, parent: str) -> str:
    """One set in a Ray task: its child run (found again if it exists), scored and finished."""
    import traceback

    from mlflow.tracking import MlflowClient

    from sweeper import tracking

    cfg = ScoreSweepConfig.model_validate(cfg_json)
    client = MlflowClient(tracking_uri)
    s = loaded.spec
    run_id = tracking.trial_run(
        client,
        experiment_id,
        parent,
        s.key,
        run_name=s.key.replace("/", " "),
        tags={tracking.SWEEP_NAME: cfg.name, "sweeper.host": socket.gethostname()},
    )
    try:
        score_set(cfg, loaded, client, run_id)
    except BaseException as exc:
        tracking.finish_run(client, run_id, ok=False, error="".join(traceback.format_exception_only(type(exc), exc)))
        raise
    tracking.finish_run(client, run_id, ok=True)
    return run_id


def run_score_sweep(cfg: ScoreSweepConfig, sets: list[LoadedSet], tracking_uri: str) -> int:
    """Score every set not yet FINISHED in the sweep's parent run, one Ray task per set; 0 when all finished,
    1 when one failed. Ray must be initialised."""
    import ray
    from mlflow.tracking import MlflowClient

    from sweeper import tracking

    client = MlflowClient(tracking_uri)
    experiment_id = tracking.get_or_create_experiment(client, cfg.experiment, tracking_uri)
    parent_run = tracking.find_sweep_run(client, experiment_id, cfg.name)
    if parent_run is None:
        dumped = cfg.model_dump(mode="json")
        settings = {"score": dumped["score"], "embed": dumped["embed"]}
        parent = tracking.start_sweep_run(
            client, experiment_id, cfg.name, yaml.safe_dump(dumped, sort_keys=False), len(sets), settings=settings
        )
    else:
        parent = parent_run.info.run_id
        client.update_run(parent, status="RUNNING")
    done = {
        r.data.tags.get(tracking.TRIAL_KEY)
        for r in tracking.child_runs(client, experiment_id, parent)
        if r.info.status == "FINISHED"
    }
    todo = [s for s in sets if s.spec.key not in done]
    log.info("sweeper score %r: %d set(s) to score, %d already finished", cfg.name, len(todo), len(sets) - len(todo))
    task = ray.remote(num_cpus=cfg.resources.cpus_per_trial)(_score_task)
    refs = [task.remote(cfg.model_dump(mode="json"), s, tracking_uri, experiment_id, parent) for s in todo]
    for ref in refs:
        try:
            ray.get(ref)
        except Exception as exc:  # the set's run is FAILED with its error; the others go on
            log.error("a set failed: %s", str(exc).strip().splitlines()[-1])
    return finish(client, experiment_id, parent, cfg)


def finish(client: Any, experiment_id: str, parent: str, cfg: ScoreSweepConfig) -> int:
    """Summarise the score sweep on its parent run like a trained sweep's, and close it; 0 when every set finished."""
    from sweeper.tune import finish_parent

    return finish_parent(client, experiment_id, parent, [s.key for s in cfg.embeddings], cfg.score.metric_names)
