"""A real tiny sweep on a local Ray with a real MLflow store: runs, params, metrics and artifacts, checked against
independent recomputations from the logged artifacts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ONE_AT_A_TIME, tiny_config
from mlflow.tracking import MlflowClient
from scipy.spatial.distance import cdist, directed_hausdorff

from analysis import load_scores
from experiments.embed import embed_images
from experiments.models import build_model
from sweeper.bootstrap import draw_indices
from sweeper.config import load_dataset
from sweeper.tune import init_ray, run_sweep

SCORE_COLUMNS = [
    "model",
    "train_class",
    "augmentation",
    "eval_class",
    "metric",
    "mean",
    "std",
    "ci_low",
    "ci_high",
    "n_resamples",
    "sample_size",
    "p_baseline_below",
    "median",
    "role",
    "full",
]


@pytest.fixture(scope="module")
def sweep(local_ray, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    cfg = tiny_config(tmp, **ONE_AT_A_TIME)
    init_ray()  # already up: must be a no-op
    code = run_sweep(cfg, uri)
    return cfg, uri, code, tmp


def _runs(uri, experiment):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("sweeper.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("sweeper.role") == "trial"]
    return client, parents, children


def test_sweep_logs_one_parent_and_one_finished_child_per_trial(sweep):
    cfg, uri, code, _ = sweep
    assert code == 0
    client, parents, children = _runs(uri, cfg.experiment)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "config")} == {"config/sweep.yaml"}
    assert parent.data.params["n_trials"] == "4" and "version.torch" in parent.data.params
    assert parent.data.metrics["n_failed"] == 0
    assert sorted(r.data.tags["sweeper.trial_key"] for r in children) == sorted(t.key for t in cfg.trials())
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.params["epochs"] == "1" and run.data.params["train_class"] == "1"
        history = client.get_metric_history(run.info.run_id, "loss")
        assert [m.step for m in history] == [1] and np.isfinite(history[0].value)
        arts = {a.path for d in ("model", "embeddings", "scores") for a in client.list_artifacts(run.info.run_id, d)}
        assert {
            "model/weights.pt",
            "model/model.json",
            "embeddings/train.parquet",
            "embeddings/test.parquet",
            "scores/scores.parquet",
            "scores/bootstrap.parquet",
        } <= arts
        for metric in ("hausdorff", "euclidean", "mtopdiv"):
            assert 1 <= run.data.metrics[f"baseline_rank.{metric}"] <= 3
            assert 0 <= run.data.metrics[f"baseline_auroc.{metric}"] <= 1
            for c in ("0", "1", "2"):
                assert f"score.{metric}.{c}.mean" in run.data.metrics
        assert 0 <= run.data.metrics["knn_auroc"] <= 1
        assert {"score.knn_auroc.0.mean", "score.knn_auroc.2.mean"} <= set(run.data.metrics)


def _download(client, run_id, path, tmp):
    return pd.read_parquet(client.download_artifacts(run_id, path, str(tmp)))


def test_score_table_matches_an_independent_bootstrap_of_the_logged_embeddings(sweep, tmp_path):
    cfg, uri, _, _ = sweep
    client, _, children = _runs(uri, cfg.experiment)
    run = next(r for r in children if r.data.params["augmentation"] == "non_rigid")
    rid = run.info.run_id
    scores = _download(client, rid, "scores/scores.parquet", tmp_path)
    raw = _download(client, rid, "scores/bootstrap.parquet", tmp_path)
    train = _download(client, rid, "embeddings/train.parquet", tmp_path)
    test = _download(client, rid, "embeddings/test.parquet", tmp_path)

    assert list(scores.columns) == SCORE_COLUMNS
    assert len(scores) == 3 * 3 + 2 and set(scores.eval_class) == {"0", "1", "2"}
    knn = scores[scores.metric == "knn_auroc"]
    assert set(knn.eval_class) == {"0", "2"} and knn["mean"].between(0, 1).all()
    scores = scores[scores.metric != "knn_auroc"]
    assert (scores.n_resamples == 4).all() and (scores.sample_size == 8).all()
    assert (scores.ci_low <= scores["mean"] + 1e-12).all() and (scores["mean"] <= scores.ci_high + 1e-12).all()
    assert list(raw.columns) == ["eval_class", "metric", "sample_size", "resample", "value"] and len(raw) == 3 * 3 * 4

    assert len(train) == 24 and set(train.class_name) == {"1"} and (train.augmentation == "none").all()
    assert len(test) == 3 * 12 and (test.augmentation == "non_rigid").all()
    dims = [c for c in test.columns if c.startswith("dim_")]
    assert len(dims) == 64
    np.testing.assert_allclose(np.linalg.norm(test[dims].to_numpy(), axis=1), 1.0, rtol=1e-5)

    ref = train[dims].to_numpy(np.float64)
    for pos, c in enumerate(["0", "1", "2"]):
        cloud = test.loc[test.class_name == c, dims].to_numpy(np.float64)
        ri, ei = draw_indices(len(ref), len(cloud), 4, 8, seed=3, class_position=pos)
        hd = [
            max(directed_hausdorff(ref[a], cloud[b])[0], directed_hausdorff(cloud[b], ref[a])[0])
            for a, b in zip(ri, ei, strict=False)
        ]
        eu = [cdist(ref[a], cloud[b]).sum() for a, b in zip(ri, ei, strict=False)]
        got = raw[raw.eval_class == c].set_index(["metric", "resample"])["value"]
        np.testing.assert_allclose(got.loc["hausdorff"].to_numpy(), hd, rtol=1e-9)
        np.testing.assert_allclose(got.loc["euclidean"].to_numpy(), eu, rtol=1e-9)
        row = scores[(scores.eval_class == c) & (scores.metric == "hausdorff")].iloc[0]
        assert row["mean"] == pytest.approx(np.mean(hd)) and row["std"] == pytest.approx(np.std(hd, ddof=1))
        assert run.data.metrics[f"score.hausdorff.{c}.mean"] == pytest.approx(np.mean(hd))
        # the full-cloud values: the metric on the whole logged clouds, no resampling
        full = scores[scores.eval_class == c].set_index("metric")["full"]
        whole = max(directed_hausdorff(ref, cloud)[0], directed_hausdorff(cloud, ref)[0])
        assert full["hausdorff"] == pytest.approx(whole, rel=1e-9)
        assert full["euclidean"] == pytest.approx(cdist(ref, cloud).sum(), rel=1e-9)
        assert np.isnan(full["mtopdiv"]), "MTopDiv gets a full value only when score.full_cloud lists it"

    hd = raw[raw.metric == "hausdorff"]
    base = hd[hd.eval_class == "1"]["value"].to_numpy()
    for c in ("0", "2"):
        other = hd[hd.eval_class == c]["value"].to_numpy()
        p_below = np.mean([(b < o) + 0.5 * (b == o) for b in base for o in other])
        row = scores[(scores.eval_class == c) & (scores.metric == "hausdorff")].iloc[0]
        assert row.p_baseline_below == pytest.approx(p_below)
        assert run.data.metrics[f"p_baseline_below.hausdorff.{c}"] == pytest.approx(p_below)
    assert np.isnan(scores[(scores.eval_class == "1") & (scores.metric == "hausdorff")].iloc[0].p_baseline_below)


def test_every_score_row_has_a_value_and_an_interval(sweep):
    """The tidy-table invariant over a real sweep: no NaN ``mean``, ``ci_low`` or ``ci_high`` on any row (cloud
    metrics, k-NN AUROC, detection scores); ``full`` is NaN only where it was not asked for (MTopDiv here)."""
    cfg, uri, _, _ = sweep
    df = load_scores(cfg.experiment, tracking_uri=uri)
    assert len(df) and not df[["mean", "ci_low", "ci_high"]].isna().any().any()
    assert (df.ci_low <= df.ci_high).all()
    assert set(df.loc[df["full"].isna(), "metric"]) <= {"mtopdiv"}


def test_logged_weights_reproduce_the_logged_embeddings(sweep, tmp_path):
    cfg, uri, _, _ = sweep
    client, _, children = _runs(uri, cfg.experiment)
    run = next(r for r in children if r.data.params["model"] == "barlow_twins")
    path = client.download_artifacts(run.info.run_id, "model/weights.pt", str(tmp_path))
    weights = torch.load(path, map_location="cpu", weights_only=True)
    data = load_dataset(cfg)
    model = build_model("barlow_twins", *data.channel_stats())
    model.load_state_dict(weights)
    z = embed_images(model, data.images_of("1", "train"))
    train = _download(client, run.info.run_id, "embeddings/train.parquet", tmp_path)
    np.testing.assert_allclose(train[[c for c in train.columns if c.startswith("dim_")]].to_numpy(), z, atol=1e-5)


def test_load_scores_returns_every_trial_eval_class_and_metric(sweep):
    cfg, uri, _, _ = sweep
    df = load_scores(cfg.experiment, tracking_uri=uri)
    assert len(df) == 4 * (3 * 3 + 2)
    assert set([*SCORE_COLUMNS, "run_id"]) <= set(df.columns)
    assert df.groupby("run_id").size().eq(11).all()
    with pytest.raises(ValueError, match=r"no MLflow experiment named 'nope'; experiments: .*tiny-exp"):
        load_scores("nope", tracking_uri=uri)


@pytest.mark.slow
def test_a_diverging_trial_fails_alone_and_the_sweep_exits_1(local_ray, tmp_path, caplog):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = tiny_config(
        tmp_path,
        grid__augmentation=["none"],
        train__epochs=3,
        name="diverge",
        train__per_model={"barlow_twins": {"lr": 1e30}},
    )
    with caplog.at_level("ERROR", logger="sweeper"):
        assert run_sweep(cfg, uri) == 1
    _, parents, children = _runs(uri, cfg.experiment)
    by_model = {r.data.params["model"]: r for r in children}
    assert by_model["simclr"].info.status == "FINISHED", "the other trial goes on"
    failed = by_model["barlow_twins"]
    assert failed.info.status == "FAILED"
    assert "TrainingDivergedError" in failed.data.tags["sweeper.error"]
    assert "lower the learning rate" in failed.data.tags["sweeper.error"]
    assert parents[0].info.status == "FAILED" and parents[0].data.metrics["n_failed"] == 1
    assert "model=barlow_twins/train_class=1/augmentation=none/seed=0 failed" in caplog.text


def test_bootstrap_tasks_match_a_direct_loop_and_ignore_worker_count(local_ray):
    from sweeper.bootstrap import bootstrap_scores

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(30, 4))
    clouds = {"a": rng.normal(size=(20, 4)), "b": rng.normal(1.0, size=(25, 4))}
    kw = dict(n_resamples=10, sample_size=6, seed=5)
    s1, r1 = bootstrap_scores(ref, clouds, ["hausdorff", "euclidean"], workers=1, **kw)
    s2, r2 = bootstrap_scores(ref, clouds, ["hausdorff", "euclidean"], workers=2, tasks_per_worker=3, **kw)
    pd.testing.assert_frame_equal(s1, s2)
    pd.testing.assert_frame_equal(r1, r2)
    for pos, (name, cloud) in enumerate(clouds.items()):
        ri, ei = draw_indices(len(ref), len(cloud), 10, 6, seed=5, class_position=pos)
        expect = np.array([cdist(ref[a], cloud[b]).sum() for a, b in zip(ri, ei, strict=False)])
        got = r1[(r1.eval_class == name) & (r1.metric == "euclidean")].sort_values("resample")["value"].to_numpy()
        np.testing.assert_allclose(got, expect, rtol=1e-12)
        row = s1[(s1.eval_class == name) & (s1.metric == "euclidean")].iloc[0]
        assert row.ci_low == pytest.approx(np.percentile(expect, 2.5))
        assert row.ci_high == pytest.approx(np.percentile(expect, 97.5))
    with pytest.raises(ValueError, match="sample_size=40 exceeds a cloud"):
        bootstrap_scores(ref, clouds, ["hausdorff"], n_resamples=2, sample_size=40, seed=0)
    with pytest.raises(ValueError, match="unknown metric"):
        bootstrap_scores(ref, clouds, ["cosine"], n_resamples=2, sample_size=4, seed=0)


@pytest.mark.slow
def test_rescore_appends_missing_metrics_to_the_same_runs_and_is_idempotent(local_ray, tmp_path):
    from sklearn.metrics import roc_auc_score

    from experiments.metrics.detection import knn_scores
    from sweeper.rescore import rescore

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = tiny_config(
        tmp_path,
        grid__model=["simclr"],
        grid__augmentation=["gaussian_blur"],
        name="rescore",
        score__metrics=["hausdorff"],
    )
    assert run_sweep(cfg, uri) == 0
    client, _, children = _runs(uri, cfg.experiment)
    (run,) = children
    rid = run.info.run_id
    before = _download(client, rid, "scores/scores.parquet", tmp_path / "a")
    assert set(before.metric) == {"hausdorff"}

    report = rescore(cfg.experiment, ["hausdorff", "euclidean", "knn_auroc"], tracking_uri=uri, workers=2)
    assert report.updated == {rid: ["euclidean", "knn_auroc"]}
    client, parents, children = _runs(uri, cfg.experiment)
    assert [c.info.run_id for c in children] == [rid] and len(parents) == 1
    assert children[0].info.status == "FINISHED" and children[0].data.tags["sweeper.rescored"] == "euclidean,knn_auroc"
    after = _download(client, rid, "scores/scores.parquet", tmp_path / "b")
    raw = _download(client, rid, "scores/bootstrap.parquet", tmp_path / "b")
    pd.testing.assert_frame_equal(after[after.metric == "hausdorff"].reset_index(drop=True), before)
    assert len(after) == 3 + 3 + 2 and len(raw) == 2 * 3 * 4

    train = _download(client, rid, "embeddings/train.parquet", tmp_path / "b")
    test = _download(client, rid, "embeddings/test.parquet", tmp_path / "b")
    dims = [c for c in test.columns if c.startswith("dim_")]
    ref = train[dims].to_numpy(np.float64)
    for pos, c in enumerate(["0", "1", "2"]):
        cloud = test.loc[test.class_name == c, dims].to_numpy(np.float64)
        ri, ei = draw_indices(len(ref), len(cloud), 4, 8, seed=3, class_position=pos)
        expect = [cdist(ref[a], cloud[b]).sum() for a, b in zip(ri, ei, strict=False)]
        got = raw[(raw.metric == "euclidean") & (raw.eval_class == c)].sort_values("resample")["value"]
        np.testing.assert_allclose(got.to_numpy(), expect, rtol=1e-9)
    normal = knn_scores(ref, test.loc[test.class_name == "1", dims].to_numpy(np.float64), k=3)
    for c in ("0", "2"):
        other = knn_scores(ref, test.loc[test.class_name == c, dims].to_numpy(np.float64), k=3)
        expect = roc_auc_score([0] * len(normal) + [1] * len(other), np.concatenate([normal, other]))
        row = after[(after.metric == "knn_auroc") & (after.eval_class == c)].iloc[0]
        assert row["mean"] == pytest.approx(expect)
        assert 0 <= row.ci_low <= row.ci_high <= 1 and row["std"] >= 0
        assert children[0].data.metrics[f"score.knn_auroc.{c}.mean"] == pytest.approx(expect)

    again = rescore(cfg.experiment, ["euclidean", "knn_auroc"], tracking_uri=uri)
    assert again.updated == {} and again.unchanged == [rid]
    pd.testing.assert_frame_equal(_download(client, rid, "scores/scores.parquet", tmp_path / "c"), after)


def test_rerunning_a_sweep_skips_finished_trials_and_refuses_changed_settings(sweep):
    from sweeper.config import ConfigError
    from sweeper.tune import plan_sweep, resume_sweep

    cfg, uri, _, tmp = sweep
    assert run_sweep(cfg, uri) == 0  # every trial already FINISHED: nothing runs, nothing is duplicated
    _client, parents, children = _runs(uri, cfg.experiment)
    assert len(parents) == 1 and len(children) == 4
    assert parents[0].info.status == "FINISHED" and parents[0].data.metrics["n_finished"] == 4

    wider = tiny_config(tmp, grid__augmentation=["none", "non_rigid", "gaussian_noise"])
    plan = plan_sweep(wider, uri)
    assert plan.parent_run_id == parents[0].info.run_id
    assert len(plan.skipped) == 4 and [t.augmentation for t in plan.trials] == ["gaussian_noise"] * 2
    assert plan_sweep(wider, uri, force=True).parent_run_id is None
    with pytest.raises(ConfigError, match=r"already exists .* with other settings \(train.epochs\); use --force"):
        plan_sweep(tiny_config(tmp, train__epochs=2), uri)

    assert resume_sweep("tiny", storage=str(tmp / "ray_results")) == 0
    _, parents, children = _runs(uri, cfg.experiment)
    assert len(parents) == 1 and len(children) == 4
    assert all(r.info.status == "FINISHED" for r in parents + children)


@pytest.mark.slow
def test_trials_with_the_same_training_train_once(local_ray, tmp_path):
    from sweeper.training_cache import WEIGHTS_FROM

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = tiny_config(
        tmp_path,
        name="trainonce",
        grid__model=["simclr"],
        grid__augmentation=["none", "gaussian_noise", "gaussian_blur"],
        train__augmentation_at="eval",
        train__epochs=2,
        score__metrics=["hausdorff"],
    )
    assert run_sweep(cfg, uri) == 0
    client, _, children = _runs(uri, cfg.experiment)
    assert len(children) == 3 and all(r.info.status == "FINISHED" for r in children)
    trained = [r for r in children if WEIGHTS_FROM not in r.data.tags]
    assert len(trained) == 1, "one trial trains, the two others reuse its weights"
    owner = trained[0].info.run_id
    assert [m.step for m in client.get_metric_history(owner, "loss")] == [1, 2]
    assert len({r.data.tags["sweeper.training_key"] for r in children}) == 1
    references = []
    for run in children:
        if run.info.run_id != owner:
            assert run.data.tags[WEIGHTS_FROM] == owner
            assert client.get_metric_history(run.info.run_id, "loss") == []
        references.append(_download(client, run.info.run_id, "embeddings/train.parquet", tmp_path / run.info.run_id))
    for other in references[1:]:  # same weights, same clean reference cloud
        pd.testing.assert_frame_equal(other, references[0])
    augs = {r.data.params["augmentation"]: r for r in children}
    noisy = _download(client, augs["gaussian_noise"].info.run_id, "embeddings/test.parquet", tmp_path / "n")
    clean = _download(client, augs["none"].info.run_id, "embeddings/test.parquet", tmp_path / "c")
    assert not np.allclose(noisy.filter(like="dim_").to_numpy(), clean.filter(like="dim_").to_numpy())
