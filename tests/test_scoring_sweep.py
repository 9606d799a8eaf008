"""Issue 19 through a real tiny sweep (local Ray, real sqlite MLflow store): a multi-class trial
(``grid.train_classes: [[0, 1]]`` on digits) logs a ``role`` for every row, and every separation and k-NN summary
equals a recomputation over the ``role == other`` rows; the anomaly sets are embedded under the trial's evaluation
perturbation (recomputed from the logged weights); ``score.seed: per_trial`` and ``embed.dtype: float64`` as
logged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_config
from mlflow.tracking import MlflowClient
from scipy.spatial.distance import cdist
from sklearn.metrics import roc_auc_score

from analysis import load_bootstrap, load_scores
from analysis.roles import role_of
from analysis.tables import separation
from experiments.augment import make_augmentation
from experiments.embed import embed_images
from experiments.models import build_model
from sweeper.eval_sets import PERTURBED_TAG, perturbation_seed
from sweeper.scoring import trial_score_seed
from sweeper.trial_data import anomaly_sets
from sweeper.tune import run_sweep

pytestmark = pytest.mark.slow

CLASSES = ["0", "1", "2", "3"]


@pytest.fixture(scope="module")
def sweep(local_ray, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multi")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    cfg = tiny_config(
        tmp,
        name="multi",
        experiment="multi-exp",
        dataset={"name": "digits", "classes": CLASSES, "max_train_per_class": 24, "max_test_per_class": 12},
        grid={"model": ["simclr"], "train_classes": [["0", "1"]], "augmentation": ["gaussian_noise"], "seed": [0]},
        embed={"dtype": "float64"},
        score={
            "n_resamples": 6,
            "sample_size": 8,
            "seed": "per_trial",
            "metrics": ["hausdorff", "mmd", "knn_auroc", "auroc", "nc_accuracy"],
            "knn_k": 3,
        },
        ood={"noise_images": 12},
    )
    assert run_sweep(cfg, uri) == 0
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("multi-exp")
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("sweeper.role") == "trial"]
    assert len(runs) == 1
    return cfg, uri, client, runs[0], tmp


def test_every_row_has_a_role(sweep):
    _, uri, _, _, tmp = sweep
    scores = load_scores("multi-exp", uri, cache_dir=tmp / "cache")
    assert scores["role"].notna().all() and set(scores["train_class"]) == {"0+1"}
    assert (scores["role"] == [role_of(c, "0+1") for c in scores["eval_class"]]).all()
    roles = dict(zip(scores["eval_class"], scores["role"], strict=False))
    assert roles["0+1"] == "baseline" and roles["0"] == roles["1"] == roles["in_distribution"] == "in_distribution"
    assert roles["2"] == roles["3"] == roles["novelty"] == roles["gaussian_noise"] == "other"
    assert set(scores.loc[scores.metric == "knn_auroc", "eval_class"]) == {"2", "3"}


def test_separation_and_knn_summaries_are_over_other_rows(sweep):
    _, uri, client, run, tmp = sweep
    metrics = run.data.metrics
    boot = load_bootstrap("multi-exp", uri, cache_dir=tmp / "cache")
    for metric in ("hausdorff", "mmd"):
        b = boot[boot.metric == metric]
        base = b.loc[b.role == "baseline", "value"].to_numpy()
        others = {c: g["value"].to_numpy() for c, g in b[b.role == "other"].groupby("eval_class")}
        assert set(others) == {"2", "3"}
        assert metrics[f"baseline_rank.{metric}"] == 1 + sum(v.mean() <= base.mean() for v in others.values())
        pooled = np.concatenate(list(others.values()))
        y = np.r_[np.zeros(len(base)), np.ones(len(pooled))]
        assert metrics[f"baseline_auroc.{metric}"] == pytest.approx(roc_auc_score(y, np.r_[base, pooled]))
        for c, v in others.items():
            want = np.mean(base[:, None] < v[None, :]) + 0.5 * np.mean(base[:, None] == v[None, :])
            assert metrics[f"p_baseline_below.{metric}.{c}"] == pytest.approx(want)
        assert f"p_baseline_below.{metric}.0" not in metrics and f"p_baseline_below.{metric}.1" not in metrics
    sep = separation(boot)
    assert set(sep["eval_class"]) == {"0+1", "2", "3"}
    for metric, g in sep.groupby("metric"):
        assert (g["baseline_rank"] == metrics[f"baseline_rank.{metric}"]).all()
    # k-NN AUROC from the logged embeddings, brute force: the training classes' pooled test images vs each other class
    train = client.download_artifacts(run.info.run_id, "embeddings/train.parquet", str(tmp / "e"))
    test = client.download_artifacts(run.info.run_id, "embeddings/test.parquet", str(tmp / "e"))
    train, test = pd.read_parquet(train), pd.read_parquet(test)
    dims = [c for c in test.columns if c.startswith("dim_")]
    ref = train[dims].to_numpy()

    def knn(x):
        return np.sort(cdist(x, ref), axis=1)[:, :3].mean(axis=1)

    normal = knn(test.loc[test.class_name.isin(["0", "1"]), dims].to_numpy())
    aurocs = []
    for c in ("2", "3"):
        s = knn(test.loc[test.class_name == c, dims].to_numpy())
        aurocs.append(roc_auc_score(np.r_[np.zeros(len(normal)), np.ones(len(s))], np.r_[normal, s]))
        assert metrics[f"score.knn_auroc.{c}.mean"] == pytest.approx(aurocs[-1], abs=1e-12)
    assert metrics["knn_auroc"] == pytest.approx(np.mean(aurocs), abs=1e-12)


def test_anomaly_sets_are_embedded_under_the_evaluation_perturbation(sweep):
    cfg, _, client, run, tmp = sweep
    rid, spec = run.info.run_id, cfg.trials()[0]
    assert run.data.tags[PERTURBED_TAG].split(",") == [*CLASSES, "gaussian_noise"]
    d = tmp / "w"
    meta = json.loads(Path(client.download_artifacts(rid, "model/model.json", str(d))).read_text())
    model = build_model("simclr", meta["mean"], meta["std"], image_size=meta["image_size"], **meta["options"])
    model.load_state_dict(
        torch.load(client.download_artifacts(rid, "model/weights.pt", str(d)), map_location="cpu", weights_only=True)
    )
    logged = pd.read_parquet(client.download_artifacts(rid, "embeddings/anomaly.parquet", str(d)))
    assert (logged["augmentation"] == "gaussian_noise").all()
    dims = [c for c in logged.columns if c.startswith("dim_")]
    assert all(logged[c].dtype == np.float64 for c in dims)  # embed.dtype: float64
    images = anomaly_sets(cfg, spec, (float(np.mean(meta["mean"])), float(np.mean(meta["std"]))))["gaussian_noise"]
    perturb = make_augmentation("gaussian_noise", **cfg.augmentations.get("gaussian_noise", {}))
    gen = torch.Generator().manual_seed(perturbation_seed(spec.seed, "gaussian_noise"))
    kw = {"l2_normalize": cfg.embed.l2_normalize, "dtype": "float64"}
    want = embed_images(model, images, perturb=perturb, generator=gen, **kw)
    clean = embed_images(model, images, **kw)
    got = logged[dims].to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert np.abs(got - clean).max() > 1e-3  # the old behaviour (anomalies embedded clean) fails here


def test_per_trial_score_seed_is_logged(sweep):
    _, _, _, run, _ = sweep
    key = run.data.tags["sweeper.trial_key"]
    assert int(run.data.params["score_seed"]) == trial_score_seed("per_trial", key) != 0
    assert run.data.params["embed_dtype"] == "float64"
