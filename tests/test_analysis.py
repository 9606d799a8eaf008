"""The analysis package against a real tiny sweep (local Ray, sqlite MLflow store): loaders, the artifact cache,
proj18's tables, the separation table (against a brute-force computation from the raw resamples), the plots, the
HTML report and the overview notebook."""

from __future__ import annotations

import itertools
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import ONE_AT_A_TIME, tiny_config
from matplotlib.figure import Figure
from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository
from mlflow.tracking import MlflowClient

from analysis import load_bootstrap, load_embeddings, load_history, load_runs, load_scores, plots, tables
from analysis.load import SCORE_COLUMNS
from analysis.report import build_report
from sweeper.tune import run_sweep

EXPERIMENT = "analysis-exp"
CLOUD_METRICS = ["hausdorff", "euclidean", "mtopdiv", "mmd"]
METRICS = [*CLOUD_METRICS, "knn_auroc"]
CLASSES = ["0", "1", "2"]
TRAIN_CLASSES = ["0", "1"]
MODELS = ["barlow_twins", "simclr"]
N_RESAMPLES = 12
ROWS_PER_TRIAL = len(CLOUD_METRICS) * len(CLASSES) + (len(CLASSES) - 1)  # knn_auroc: no row for the train class
NOTEBOOK = Path(__file__).resolve().parents[1] / "analysis" / "notebooks" / "overview.ipynb"


def analysis_config(tmp: Path, **changes):
    defaults = dict(
        experiment=EXPERIMENT,
        dataset__classes=CLASSES,
        grid__model=MODELS,
        grid__train_class=TRAIN_CLASSES,
        grid__augmentation=["gaussian_noise"],
        score__n_resamples=N_RESAMPLES,
        score__metrics=METRICS,
        resources__cpus_per_trial=0.5,
        resources__cpus_per_bootstrap_worker=0.5,
        **ONE_AT_A_TIME,
    )
    return tiny_config(tmp, **{**defaults, **changes})


@pytest.fixture(scope="module")
def sweep(local_ray, tmp_path_factory):
    """Four finished trials (2 models x 2 training classes, 3 eval classes, 1 epoch) and, from a second sweep in
    the same experiment, one FAILED trial (diverging learning rate). Artifacts under the module's tmp folder, the
    analysis cache in its own folder (never the user's)."""
    tmp = tmp_path_factory.mktemp("analysis")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    MlflowClient(uri).create_experiment(EXPERIMENT, artifact_location=(tmp / "artifacts").as_uri())
    cfg = analysis_config(tmp)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SWEEPER_CACHE_DIR", str(tmp / "cache"))
        assert run_sweep(cfg, uri) == 0
        failing = analysis_config(
            tmp, name="diverge", grid__model=["simclr"], grid__train_class=["0"], train__lr=1e30, train__epochs=3
        )
        assert run_sweep(failing, uri) == 1
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name(EXPERIMENT)
        runs = client.search_runs([exp.experiment_id])
        trials = [r for r in runs if r.data.tags.get("sweeper.role") == "trial"]
        assert sorted(r.info.status for r in trials) == ["FAILED"] + ["FINISHED"] * 4
        yield SimpleNamespace(
            uri=uri,
            tmp=tmp,
            cfg=cfg,
            client=client,
            finished=[r for r in trials if r.info.status == "FINISHED"],
            parent=next(
                r.info.run_id
                for r in runs
                if r.data.tags.get("sweeper.role") == "sweep" and r.data.tags.get("sweeper.sweep") == "tiny"
            ),
        )


def _download(client, run_id, path, tmp):
    tmp.mkdir(parents=True, exist_ok=True)
    return pd.read_parquet(client.download_artifacts(run_id, path, str(tmp)))


def _left_out_warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "analysis.load" and "left out" in r.getMessage()]


# ------------------------------------------------------------------------------------------------ loading


@pytest.mark.slow
def test_load_runs_one_row_per_finished_trial_with_params_and_summary_metrics(sweep, caplog):
    with caplog.at_level(logging.WARNING, logger="analysis.load"):
        runs = load_runs(EXPERIMENT, sweep.uri)
    assert _left_out_warnings(caplog) == ["left out 1 trial run(s) that are not FINISHED (1 FAILED)"]
    caplog.clear()
    assert len(runs) == 4 and runs["run_id"].is_unique
    assert sorted(runs["trial_key"]) == sorted(t.key for t in sweep.cfg.trials())
    assert load_runs(EXPERIMENT, sweep.uri, sweep="tiny")["run_id"].tolist() == runs["run_id"].tolist()
    assert load_runs(EXPERIMENT, sweep.uri, sweep="diverge").empty  # its one trial FAILED
    assert (runs["status"] == "FINISHED").all() and (runs["sweep"] == "tiny").all()
    assert (runs["parent_run_id"] == sweep.parent).all()
    assert list(runs.columns[:12]) == [
        "run_id",
        "trial_key",
        "sweep",
        "parent_run_id",
        "status",
        "start_time",
        "end_time",
        "rescored",
        "model",
        "train_class",
        "augmentation",
        "seed",
    ]
    assert sorted(runs["train_class"]) == ["0", "0", "1", "1"]  # class names stay strings
    assert runs["seed"].tolist() == [0] * 4 and runs["epochs"].tolist() == [1] * 4
    assert runs["lr"].tolist() == [0.01] * 4 and runs["l2_normalize"].tolist() == [True] * 4
    for run in sweep.finished:
        row = runs.set_index("run_id").loc[run.info.run_id]
        assert row["model"] == run.data.params["model"]
        for key, value in run.data.metrics.items():
            assert row[key] == pytest.approx(value), key
        for metric in CLOUD_METRICS:
            assert 1 <= row[f"baseline_rank.{metric}"] <= 3
            for c in CLASSES:
                assert np.isfinite(row[f"score.{metric}.{c}.mean"])


@pytest.mark.slow
def test_load_scores_one_row_per_trial_eval_class_and_metric(sweep, caplog, tmp_path):
    with caplog.at_level(logging.WARNING, logger="analysis.load"):
        scores = load_scores(EXPERIMENT, sweep.uri, cache_dir=tmp_path / "cache")
    assert len(_left_out_warnings(caplog)) == 1
    assert list(scores.columns) == [*SCORE_COLUMNS, "seed", "run_id", "trial_key"]
    assert len(scores) == 4 * ROWS_PER_TRIAL
    assert not scores.duplicated(["run_id", "eval_class", "metric"]).any()
    assert not scores.duplicated(["model", "train_class", "augmentation", "seed", "eval_class", "metric"]).any()
    assert set(scores["metric"]) == set(METRICS) and set(scores["eval_class"]) == set(CLASSES)
    knn = scores[scores["metric"] == "knn_auroc"]
    assert not (knn["eval_class"] == knn["train_class"]).any() and knn["mean"].between(0, 1).all()
    for run in sweep.finished:
        rid = run.info.run_id
        expect = _download(sweep.client, rid, "scores/scores.parquet", tmp_path / rid)
        got = scores[scores["run_id"] == rid]
        pd.testing.assert_frame_equal(got[SCORE_COLUMNS].reset_index(drop=True), expect[SCORE_COLUMNS])
        assert (got["trial_key"] == run.data.tags["sweeper.trial_key"]).all() and (got["seed"] == 0).all()


@pytest.mark.slow
def test_load_bootstrap_holds_every_resample_and_agrees_with_the_score_table(sweep, tmp_path):
    boot = load_bootstrap(EXPERIMENT, sweep.uri, cache_dir=tmp_path / "cache")
    assert list(boot.columns) == [
        "model",
        "train_class",
        "augmentation",
        "eval_class",
        "metric",
        "sample_size",
        "resample",
        "value",
        "role",
        "seed",
        "run_id",
        "trial_key",
    ]
    assert len(boot) == 4 * len(CLOUD_METRICS) * len(CLASSES) * N_RESAMPLES
    assert not boot.duplicated(["run_id", "eval_class", "metric", "resample"]).any()
    assert "knn_auroc" not in set(boot["metric"])
    for run in sweep.finished:
        rid = run.info.run_id
        expect = _download(sweep.client, rid, "scores/bootstrap.parquet", tmp_path / rid)
        got = boot[boot["run_id"] == rid]
        columns = ["eval_class", "metric", "sample_size", "resample", "value"]
        pd.testing.assert_frame_equal(got[columns].reset_index(drop=True), expect, check_dtype=False)
        assert (got["model"] == run.data.params["model"]).all()
        assert (got["train_class"] == run.data.params["train_class"]).all()
    scores = load_scores(EXPERIMENT, sweep.uri, cache_dir=tmp_path / "cache")
    means = boot.groupby(["run_id", "eval_class", "metric"])["value"].mean()
    cloud = scores[scores["metric"] != "knn_auroc"].set_index(["run_id", "eval_class", "metric"])["mean"]
    pd.testing.assert_series_equal(means.sort_index(), cloud.sort_index(), check_names=False)


@pytest.mark.slow
def test_load_embeddings_of_one_run(sweep, tmp_path):
    run = sweep.finished[0]
    rid = run.info.run_id
    emb = load_embeddings(rid, sweep.uri, cache_dir=tmp_path / "cache")
    train = _download(sweep.client, rid, "embeddings/train.parquet", tmp_path / "d")
    test = _download(sweep.client, rid, "embeddings/test.parquet", tmp_path / "d")
    assert list(emb.columns[:5]) == ["split", "index", "label", "class_name", "augmentation"]
    assert sum(c.startswith("dim_") for c in emb.columns) == 64
    assert (emb["split"] == "train").sum() == 24 and (emb["split"] == "test").sum() == 3 * 12
    pd.testing.assert_frame_equal(emb[emb["split"] == "train"].drop(columns="split").reset_index(drop=True), train)
    pd.testing.assert_frame_equal(emb[emb["split"] == "test"].drop(columns="split").reset_index(drop=True), test)
    assert emb.attrs == {
        "run_id": rid,
        "trial_key": run.data.tags["sweeper.trial_key"],
        "model": run.data.params["model"],
        "train_class": run.data.params["train_class"],
        "trial_augmentation": "gaussian_noise",
        "seed": 0,
    }
    only_test = load_embeddings(rid, sweep.uri, splits=["test"], cache_dir=tmp_path / "cache")
    assert set(only_test["split"]) == {"test"} and len(only_test) == 36


@pytest.mark.slow
def test_load_history_per_epoch_metrics(sweep):
    hist = load_history(EXPERIMENT, sweep.uri)
    assert set(hist["metric"]) == {"loss", "images_per_second", "lr", "epoch_seconds"}
    assert len(hist) == 4 * 4 and (hist["epoch"] == 1).all()
    assert not hist.duplicated(["run_id", "metric", "epoch"]).any()
    for run in sweep.finished:
        (m,) = sweep.client.get_metric_history(run.info.run_id, "loss")
        row = hist[(hist["run_id"] == run.info.run_id) & (hist["metric"] == "loss")]
        assert row["value"].tolist() == [m.value] and row["train_class"].iloc[0] == run.data.params["train_class"]


@pytest.mark.slow
def test_unknown_experiment_is_a_clear_error_listing_the_experiments(sweep, tmp_path):
    pattern = r"no MLflow experiment named 'nope'; experiments: .*analysis-exp"
    for fn in (load_runs, load_scores, load_bootstrap, load_history):
        with pytest.raises(ValueError, match=pattern):
            fn("nope", sweep.uri)
    with pytest.raises(ValueError, match=pattern):
        build_report("nope", tmp_path / "report", sweep.uri)


# -------------------------------------------------------------------------------------------------- cache


class _CountingDownloads:
    """Counts (and optionally forbids) every file download from the local artifact store."""

    def __init__(self, monkeypatch):
        self.calls: list[str] = []
        self.forbid = False
        original = LocalArtifactRepository._download_file

        def download(repo, remote_file_path, local_path):
            self.calls.append(remote_file_path)
            if self.forbid:
                raise AssertionError(f"unexpected download of {remote_file_path}")
            return original(repo, remote_file_path, local_path)

        monkeypatch.setattr(LocalArtifactRepository, "_download_file", download)


@pytest.mark.slow
def test_second_load_downloads_nothing(sweep, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    downloads = _CountingDownloads(monkeypatch)
    scores = load_scores(EXPERIMENT, sweep.uri, cache_dir=cache)
    boot = load_bootstrap(EXPERIMENT, sweep.uri, cache_dir=cache)
    emb = load_embeddings(sweep.finished[0].info.run_id, sweep.uri, cache_dir=cache)
    assert sorted(downloads.calls) == sorted(
        ["scores/scores.parquet"] * 4
        + ["scores/bootstrap.parquet"] * 4
        + ["embeddings/train.parquet", "embeddings/test.parquet"]
    )
    files = sorted(p for p in cache.rglob("*") if p.is_file())
    assert len(files) == 10 and all(p.parts[-3] in {r.info.run_id for r in sweep.finished} for p in files)
    stamps = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in files}

    downloads.forbid = True
    downloads.calls.clear()
    pd.testing.assert_frame_equal(load_scores(EXPERIMENT, sweep.uri, cache_dir=cache), scores)
    pd.testing.assert_frame_equal(load_bootstrap(EXPERIMENT, sweep.uri, cache_dir=cache), boot)
    pd.testing.assert_frame_equal(load_embeddings(sweep.finished[0].info.run_id, sweep.uri, cache_dir=cache), emb)
    assert downloads.calls == []
    assert {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in cache.rglob("*") if p.is_file()} == stamps

    # The default cache folder is $SWEEPER_CACHE_DIR.
    monkeypatch.setenv("SWEEPER_CACHE_DIR", str(cache))
    pd.testing.assert_frame_equal(load_scores(EXPERIMENT, sweep.uri), scores)
    assert downloads.calls == []


def _copy_trial(client, source, experiment_id, tmp, key=None):
    """A FINISHED trial run in another experiment with ``source``'s tags, params and score artifacts."""
    tmp.mkdir(parents=True, exist_ok=True)
    tags = {k: v for k, v in source.data.tags.items() if k.startswith("sweeper.")}
    if key:
        tags["sweeper.trial_key"] = key
    rid = client.create_run(experiment_id, tags=tags).info.run_id
    for k, v in source.data.params.items():
        client.log_param(rid, k, v)
    for name in ("scores.parquet", "bootstrap.parquet"):
        client.log_artifact(rid, client.download_artifacts(source.info.run_id, f"scores/{name}", str(tmp)), "scores")
    client.set_terminated(rid, "FINISHED")
    return rid


@pytest.mark.slow
def test_a_rewritten_artifact_is_downloaded_again_and_repeated_trials_keep_the_newest(
    sweep, tmp_path, monkeypatch, caplog
):
    client = sweep.client
    exp_id = client.create_experiment("rewrite-exp", artifact_location=(tmp_path / "artifacts").as_uri())
    source = sweep.finished[0]
    old = _copy_trial(client, source, exp_id, tmp_path / "a")
    cache = tmp_path / "cache"
    downloads = _CountingDownloads(monkeypatch)
    before = load_scores("rewrite-exp", sweep.uri, cache_dir=cache)
    assert len(before) == ROWS_PER_TRIAL and downloads.calls == ["scores/scores.parquet"]

    # What `sweeper rescore` does: rewrite scores/scores.parquet with appended rows and extend the tag.
    table = _download(client, old, "scores/scores.parquet", tmp_path / "b")
    extra = table[table["metric"] == "hausdorff"].assign(metric="chamfer")
    path = tmp_path / "c" / "scores.parquet"
    path.parent.mkdir()
    pd.concat([table, extra], ignore_index=True).to_parquet(path, index=False)
    client.log_artifact(old, str(path), "scores")
    client.set_tag(old, "sweeper.rescored", "chamfer")
    downloads.calls.clear()
    after = load_scores("rewrite-exp", sweep.uri, cache_dir=cache)
    assert downloads.calls == ["scores/scores.parquet"]
    assert len(after) == ROWS_PER_TRIAL + len(CLASSES) and "chamfer" in set(after["metric"])
    assert len(list((cache / old / "scores").glob("scores.*.parquet"))) == 1  # the stale version is gone

    # The tag alone (same file) also changes the cache key.
    client.set_tag(old, "sweeper.rescored", "chamfer,energy")
    downloads.calls.clear()
    pd.testing.assert_frame_equal(load_scores("rewrite-exp", sweep.uri, cache_dir=cache), after)
    assert downloads.calls == ["scores/scores.parquet"]

    # The same trial key finished twice (a sweep run again into the experiment): the newest run counts.
    new = _copy_trial(client, source, exp_id, tmp_path / "d")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="analysis.load"):
        latest = load_scores("rewrite-exp", sweep.uri, cache_dir=cache)
    assert set(latest["run_id"]) == {new} and len(latest) == ROWS_PER_TRIAL
    assert any("1 older finished run(s) of a repeated trial key" in m for m in _left_out_warnings(caplog))
    both = load_scores("rewrite-exp", sweep.uri, cache_dir=cache, all_runs=True)
    assert set(both["run_id"]) == {old, new} and len(both) == 2 * ROWS_PER_TRIAL + len(CLASSES)
    with pytest.raises(ValueError, match="several trials per"):
        tables.score_table(both, "hausdorff")
    assert (
        len(load_runs("rewrite-exp", sweep.uri)) == 1 and len(load_runs("rewrite-exp", sweep.uri, all_runs=True)) == 2
    )


# ------------------------------------------------------------------------------------------------- tables


@pytest.fixture(scope="module")
def frames(sweep, tmp_path_factory):
    cache = tmp_path_factory.mktemp("frames-cache")
    return SimpleNamespace(
        scores=load_scores(EXPERIMENT, sweep.uri, cache_dir=cache),
        bootstrap=load_bootstrap(EXPERIMENT, sweep.uri, cache_dir=cache),
        history=load_history(EXPERIMENT, sweep.uri),
        runs=load_runs(EXPERIMENT, sweep.uri),
        embeddings=load_embeddings(sweep.finished[0].info.run_id, sweep.uri, cache_dir=cache),
    )


@pytest.mark.slow
def test_score_tables_are_proj18s_table_for_every_metric_train_class_and_augmentation(frames):
    scores = frames.scores
    all_tables = tables.score_tables(scores)
    assert list(all_tables) == [(m, tc, "gaussian_noise", 0) for m in METRICS for tc in TRAIN_CLASSES]
    for (metric, tc, aug, seed), table in all_tables.items():
        rows = [c for c in CLASSES if not (metric == "knn_auroc" and c == tc)]
        assert table.shape == (len(rows), len(MODELS))
        assert table.index.tolist() == rows and table.columns.tolist() == MODELS
        numeric = tables.score_table(scores, metric, tc, aug, seed, formatted=False)
        assert numeric.shape == (len(rows), 3 * len(MODELS))
        for c, model in itertools.product(rows, MODELS):
            row = scores[
                (scores.metric == metric)
                & (scores.train_class == tc)
                & (scores.eval_class == c)
                & (scores.model == model)
            ].iloc[0]
            assert numeric.loc[c, f"{model} mean"] == row["mean"]
            assert numeric.loc[c, f"{model} ci_low"] == row["ci_low"]
            assert numeric.loc[c, f"{model} ci_high"] == row["ci_high"]
            assert table.loc[c, model] == tables.format_ci(row["mean"], row["ci_low"], row["ci_high"])
            mean, low, high = map(float, re.match(r"(\S+) \[(\S+), (\S+)\]", table.loc[c, model]).groups())
            assert mean == pytest.approx(row["mean"], rel=0.01, abs=1e-12)
            assert low <= mean <= high
        assert metric in table.attrs["caption"] and f"train class {tc}" in table.attrs["caption"]
        assert "|" in table.to_markdown() and "<table" in table.to_html()
    # One trial per cell is required: the other seed / training class must be chosen.
    with pytest.raises(ValueError, match=r"several train_class values \['0', '1'\]"):
        tables.score_table(scores, "hausdorff")
    with pytest.raises(ValueError, match="no rows with train_class='7'"):
        tables.score_table(scores, "hausdorff", "7")


def test_format_ci_keeps_three_significant_digits():
    assert tables.format_ci(5512.345, 5401.2, 5620.9) == "5512 [5401, 5621]"
    assert tables.format_ci(0.0049901, 0.0045, 0.0054) == "0.00499 [0.00450, 0.00540]"
    assert tables.format_ci(1.5e-5, 0.0, 3e-5) == "1.50e-05 [0.00e+00, 3.00e-05]"
    assert tables.format_ci(float("nan"), 0, 1) == "–"


def _brute_force_separation(bootstrap, model, metric, train_class):
    sub = bootstrap[(bootstrap.model == model) & (bootstrap.metric == metric) & (bootstrap.train_class == train_class)]
    values = {c: sub[sub.eval_class == c]["value"].tolist() for c in CLASSES}
    means = {c: sum(v) / len(v) for c, v in values.items()}
    nearer = sum(1 for c in CLASSES if c != train_class and means[c] < means[train_class])
    ties = sum(1 for c in CLASSES if c != train_class and means[c] == means[train_class])
    rank = 1 + nearer + ties  # a tie counts against the baseline
    p = {}
    for c in CLASSES:
        if c == train_class:
            continue
        wins = 0.0
        for b in values[train_class]:
            for o in values[c]:
                wins += 1.0 if b < o else 0.5 if b == o else 0.0
        p[c] = wins / (len(values[train_class]) * len(values[c]))
    return rank, p


@pytest.mark.slow
def test_separation_tables_match_a_brute_force_computation_from_the_resamples(frames):
    boot, scores = frames.bootstrap, frames.scores
    all_tables = tables.separation_tables(boot)
    assert list(all_tables) == [(m, metric, "gaussian_noise", 0) for m in MODELS for metric in CLOUD_METRICS]
    for (model, metric, aug, seed), table in all_tables.items():
        assert table.shape == (len(TRAIN_CLASSES), 1 + len(CLASSES))
        assert table.index.tolist() == TRAIN_CLASSES and table.columns.tolist() == ["rank", *CLASSES]
        pd.testing.assert_frame_equal(table, tables.separation_table(boot, model, metric, aug, seed))
        for tc in TRAIN_CLASSES:
            rank, p = _brute_force_separation(boot, model, metric, tc)
            assert table.loc[tc, "rank"] == rank
            assert np.isnan(table.loc[tc, tc])
            for c, expect in p.items():
                assert table.loc[tc, c] == pytest.approx(expect, abs=1e-12)
                logged = scores[
                    (scores.model == model)
                    & (scores.metric == metric)
                    & (scores.train_class == tc)
                    & (scores.eval_class == c)
                ]["p_baseline_below"].iloc[0]
                assert table.loc[tc, c] == pytest.approx(logged, abs=1e-12)  # what the trial logged
            run = frames.runs[(frames.runs.model == model) & (frames.runs.train_class == tc)].iloc[0]
            assert run[f"baseline_rank.{metric}"] == rank
        assert "P(baseline < class)" in table.attrs["caption"]
        assert "|" in table.to_markdown() and "<table" in table.to_html()
    assert tables.p_below(np.array([1.0, 2.0]), np.array([2.0, 3.0])) == pytest.approx((1 + 1 + 0.5 + 1) / 4)


# -------------------------------------------------------------------------------------------------- plots


def _assert_labelled(fig: Figure, n_axes: int, *, colorbars: int = 0) -> None:
    assert isinstance(fig, Figure)
    assert len(fig.axes) == n_axes
    for ax in fig.axes[: n_axes - colorbars]:
        assert ax.get_xlabel() and ax.get_ylabel(), ax
    for ax in fig.axes[n_axes - colorbars :]:
        assert ax.get_ylabel() or ax.get_xlabel()  # the colour bar's label
    w, h = fig.get_size_inches()
    assert 4 <= w <= 24 and 2.5 <= h <= 20


@pytest.mark.slow
def test_plots_return_labelled_figures(frames, tmp_path):
    boot, scores = frames.bootstrap, frames.scores
    for metric in CLOUD_METRICS:
        fig = plots.bootstrap_distributions(boot, "simclr", "1", "gaussian_noise", metric)
        _assert_labelled(fig, len(CLASSES) - 1)
        assert [ax.get_title().split("\n")[0] for ax in fig.axes] == ["train 1 vs class 0", "train 1 vs class 2"]
        assert all(ax.get_xlabel() == plots.metric_label(metric) for ax in fig.axes)
        assert len(fig.legends) == 1 and len(fig.legends[0].get_texts()) == 2
        assert all(len(ax.patches) > 0 for ax in fig.axes)
    with pytest.raises(ValueError, match="several model values"):
        plots.bootstrap_distributions(boot, train_class="1", metric="hausdorff")

    for metric in METRICS:
        fig = plots.score_heatmap(scores, "barlow_twins", metric, relative=True)
        _assert_labelled(fig, 2, colorbars=1)
        ax = fig.axes[0]
        assert ax.get_xlabel() == "eval class" and ax.get_ylabel() == "training class"
        assert [t.get_text() for t in ax.get_xticklabels()] == CLASSES
        assert [t.get_text() for t in ax.get_yticklabels()] == TRAIN_CLASSES
    fig = plots.score_heatmap(scores, "simclr", "hausdorff", relative=True)
    diag = [float(t.get_text()) for t in fig.axes[0].texts if t.get_position() in ((0, 0), (1, 1))]
    assert diag == [1.0, 1.0]  # each row divided by its baseline

    fig = plots.training_curves(frames.history, ["loss", "images_per_second"])
    _assert_labelled(fig, 2 * len(MODELS))
    assert [ax.get_ylabel() for ax in fig.axes] == ["training loss"] * 2 + ["images / s"] * 2
    assert len(fig.legends) == 1 and all(len(ax.lines) == 2 for ax in fig.axes)

    fig = plots.embedding_pca(frames.embeddings)
    _assert_labelled(fig, 1)
    assert fig.axes[0].get_xlabel().startswith("PC 1 (") and len(fig.legends) == 1
    assert len(fig.legends[0].get_texts()) == len(CLASSES) + 1  # every class's test cloud + the reference cloud
    proj, ratio = plots.pca_2d(frames.embeddings.filter(like="dim_").to_numpy())
    assert proj.shape == (len(frames.embeddings), 2) and ratio[0] >= ratio[1] >= 0 and ratio.sum() <= 1 + 1e-9

    fig.savefig(tmp_path / "pca.png", dpi=80)
    assert (tmp_path / "pca.png").stat().st_size > 5000


# ------------------------------------------------------------------------------------------ report, notebook


@pytest.mark.slow
def test_build_report_writes_every_table_and_figure(sweep, tmp_path):
    out = build_report(EXPERIMENT, tmp_path / "report", sweep.uri, cache_dir=tmp_path / "cache", dpi=60, detail="all")
    index = out["index"]
    assert index == tmp_path / "report" / "index.html" and index.is_file()
    page = index.read_text(encoding="utf-8")
    assert out["parent_run_ids"] == [sweep.parent]
    assert page.index('id="summary"') < page.index('id="trials"') and 'src="figures/summary_cd.png"' in page
    assert "1 FAILED" in page
    pages = {p.name: p.read_text(encoding="utf-8") for p in out["pages"]}
    assert set(pages) == {"index.html", *(f"detail_{m}_{k}.html" for m in MODELS for k in METRICS)}
    for model, metric in itertools.product(MODELS, METRICS):
        detail = pages[f"detail_{model}_{metric}.html"]
        assert f"<caption>{metric} — {model}, augmentation gaussian_noise, seed 0" in detail
        if metric in CLOUD_METRICS:
            assert f"<caption>separation of the baseline — {model}, {metric}, augmentation gaussian_noise" in detail
    names = [p.name for p in out["figures"]]
    assert len(names) == len(set(names))
    assert sum(n.startswith("bootstrap_") for n in names) == len(MODELS) * len(TRAIN_CLASSES) * len(CLOUD_METRICS)
    assert sum(n.startswith("heatmap_") for n in names) == len(MODELS) * len(METRICS)
    assert "training_curves.png" in names and sum(n.startswith("pca_") for n in names) == 4
    for path in out["figures"]:
        assert path.is_file() and path.parent == tmp_path / "report" / "figures"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shown = sorted(src for text in pages.values() for src in re.findall(r'src="([^"]+)"', text))
    assert shown == sorted(f"figures/{n}" for n in names)


@pytest.mark.slow
def test_notebook_is_shipped_without_outputs_and_runs_clean(sweep, tmp_path, monkeypatch):
    import nbclient  # the [dev] extra
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    monkeypatch.setenv("SWEEPER_EXPERIMENT", EXPERIMENT)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sweep.uri)
    monkeypatch.setenv("SWEEPER_CACHE_DIR", str(tmp_path / "cache"))
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on any failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert f"experiment '{EXPERIMENT}'" in text and f"{4 * ROWS_PER_TRIAL} score rows" in text
    pngs = sum("image/png" in o.get("data", {}) for o in outputs)
    # + the CD diagram of the summary (one augmentation only: no robustness plot; one size: no size curve)
    assert pngs == len(MODELS) * len(CLOUD_METRICS) + len(MODELS) * len(METRICS) + 2 + 1
    html_tables = sum("<table" in o.get("data", {}).get("text/html", "") for o in outputs)
    assert html_tables >= 1 + len(METRICS) * len(TRAIN_CLASSES) + len(MODELS) * len(CLOUD_METRICS)
