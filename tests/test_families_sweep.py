"""The new model families through a real tiny sweep (local Ray, real MLflow store): weakly-supervised metric (V)AEs,
ODM with and without mining, anomaly clustering with every supervision and both backbone kinds. The logged scores are
recomputed from the logged artifacts with scikit-learn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ONE_AT_A_TIME, tiny_config
from mlflow.tracking import MlflowClient
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, roc_auc_score

from analysis import load_runs, load_scores
from analysis.report import build_report
from sweeper.tune import run_sweep

pytestmark = pytest.mark.slow


def _children(uri, experiment):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    return client, [r for r in runs if r.data.tags.get("sweeper.role") == "trial"]


def _download(client, run_id, path, tmp):
    return client.download_artifacts(run_id, path, str(tmp))


def _labelled_config(tmp, name, model, params, **extra):
    changes = dict(
        name=name,
        experiment=f"{name}-exp",
        dataset={
            "name": "digits",
            "classes": ["0", "1", "2", "3"],
            "max_train_per_class": 24,
            "max_test_per_class": 12,
        },
        grid={"model": [model], "train_classes": ["0", "1"], "augmentation": ["none"], "params": params, "seed": [0]},
        train={"epochs": 1, "batch_size": 16, "lr": 1e-3, "optimizer": "adam"},
        embed={"l2_normalize": False},
        score={
            "n_resamples": 4,
            "sample_size": 8,
            "seed": 3,
            "metrics": ["hausdorff", "auroc", "fpr95", "aupr_in", "aupr_out", "nc_accuracy"],
        },
        ood={"noise_images": 16, **extra.pop("ood", {})},
        **ONE_AT_A_TIME,
    )
    changes.update(extra)
    return tiny_config(tmp, **changes)


@pytest.fixture(scope="module")
def labelled(local_ray, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("labelled")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    weak = _labelled_config(
        tmp, "weak", "weak_metric_ae", {"constraint": ["pairwise", "triplet"], "encoder": "vae", "latent_dim": 4}
    )
    odm = _labelled_config(
        tmp, "odm", "odm", {"mining": [True, False]}, ood={"seen_classes": ["2"], "seen_synthetic": 8}
    )
    return uri, tmp, [(cfg, run_sweep(cfg, uri)) for cfg in (weak, odm)]


def test_labelled_families_log_detection_scores_that_sklearn_reproduces(labelled):
    uri, tmp, sweeps = labelled
    for cfg, code in sweeps:
        assert code == 0
        client, children = _children(uri, cfg.experiment)
        assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
        for run in children:
            rid = run.info.run_id
            assert run.data.params["family"] == "labelled" and run.data.params["train_classes"] == "0,1"
            assert "loss" in run.data.metrics
            table = pd.read_parquet(_download(client, rid, "scores/scores.parquet", tmp / rid))
            train = pd.read_parquet(_download(client, rid, "embeddings/train.parquet", tmp / rid))
            test = pd.read_parquet(_download(client, rid, "embeddings/test.parquet", tmp / rid))
            noise = pd.read_parquet(_download(client, rid, "embeddings/anomaly.parquet", tmp / rid))
            assert set(train["class_name"]) == {"0", "1"} and len(noise) == 16
            dims = [c for c in train.columns if c.startswith("dim_")]
            means = {c: g[dims].to_numpy().mean(axis=0) for c, g in train.groupby("class_name")}

            def score(frame, dims=dims, means=means):  # distance to the nearest training-class mean, by brute force
                x = frame[dims].to_numpy()
                return np.min([np.linalg.norm(x - m, axis=1) for m in means.values()], axis=0)

            inside = test[test["class_name"].isin(["0", "1"])]
            seen = ["2"] if cfg.ood.seen_classes else []
            novel = test[~test["class_name"].isin(["0", "1", *seen])]
            for name, out in (("novelty", novel), ("gaussian_noise", noise)):
                s_in, s_out = score(inside), score(out)
                y = np.r_[np.zeros(len(s_in)), np.ones(len(s_out))]
                row = table[(table["eval_class"] == name) & (table["metric"] == "auroc")]
                assert row["mean"].item() == pytest.approx(roc_auc_score(y, np.r_[s_in, s_out]), abs=1e-9)
                assert row["sample_size"].item() == len(out)
                assert {"fpr95", "aupr_in", "aupr_out"} <= set(table[table["eval_class"] == name]["metric"])
            names = list(means)
            x = inside[dims].to_numpy()
            pred = np.array(names)[np.argmin([np.linalg.norm(x - means[c], axis=1) for c in names], axis=0)]
            acc = table[table["metric"] == "nc_accuracy"]["mean"].item()
            assert acc == pytest.approx(float(np.mean(pred == inside["class_name"].to_numpy())))
            # the cloud metrics still apply: the pooled in-distribution test cloud is the baseline
            assert {"0", "1", "2", "3", "0+1"} == set(table[table["metric"] == "hausdorff"]["eval_class"])
            assert "baseline_rank.hausdorff" in run.data.metrics
            arts = {a.path for a in client.list_artifacts(rid, "plots")}
            assert "plots/latent_view.png" in arts


def test_odm_trials_differ_only_in_mining_and_report_builds(labelled):
    uri, tmp, sweeps = labelled
    cfg = sweeps[1][0]
    runs = load_runs(cfg.experiment, uri)
    assert sorted(runs["param.mining"].astype(str)) == ["False", "True"]
    assert len(set(runs["sweeper.training_key"] if "sweeper.training_key" in runs else runs["trial_key"])) == 2
    scores = load_scores(cfg.experiment, uri)
    assert {"auroc", "fpr95", "aupr_in", "aupr_out", "nc_accuracy"} <= set(scores["metric"])
    result = build_report(cfg.experiment, tmp / "report", uri)
    assert result["index"].exists()


@pytest.fixture(scope="module")
def clustering(local_ray, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clustering")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    cfg = tiny_config(
        tmp,
        name="ac",
        experiment="ac-exp",
        dataset={"name": "synthetic_mvtec", "root": str(tmp / "synthetic"), "image_size": 64},
        grid={
            "model": ["anomaly_clustering"],
            "train_class": ["synthetic_object"],
            "augmentation": ["none"],
            "params": {"supervision": ["average", "unsupervised", "supervised"], "backbone": ["resnet18", "vit_tiny"]},
            "seed": [0],
        },
        train={},
        score={"metrics": ["hausdorff"]},
        **ONE_AT_A_TIME,
        # tiny features; layers follow the backbone (CNN layer2+layer3, ViT blocks)
        **{
            "train__model_options": {
                "anomaly_clustering": {"pretrain_embed_dimension": 32, "target_embed_dimension": 32}
            }
        },
    )
    return cfg, uri, tmp, run_sweep(cfg, uri)


def test_anomaly_clustering_runs_every_supervision_and_backbone_kind(clustering):
    cfg, uri, tmp, code = clustering
    assert code == 0
    client, children = _children(uri, cfg.experiment)
    assert len(children) == 6 and all(r.info.status == "FINISHED" for r in children)
    for run in children:
        rid = run.info.run_id
        assert run.data.tags["sweeper.random_init"] == "1"
        assign = pd.read_parquet(_download(client, rid, "clustering/assignments.parquet", tmp / rid))
        table = pd.read_parquet(_download(client, rid, "scores/scores.parquet", tmp / rid))
        got = dict(zip(table["metric"], table["mean"], strict=True))
        assert set(got) == {"nmi", "ari", "f1_micro"}
        assert got["nmi"] == pytest.approx(normalized_mutual_info_score(assign["label"], assign["cluster"]))
        assert got["ari"] == pytest.approx(adjusted_rand_score(assign["label"], assign["cluster"]))
        alpha = np.load(_download(client, rid, "clustering/alpha.npy", tmp / rid), allow_pickle=False)
        assert alpha.shape[0] == len(assign) and np.allclose(alpha.sum(axis=1), 1, atol=1e-5)
        grid = json.loads(Path(_download(client, rid, "clustering/grid.json", tmp / rid)).read_text())
        assert alpha.shape[1] == grid[0] * grid[1]
        assert "plots/alpha.png" in {a.path for a in client.list_artifacts(rid, "plots")}
    runs = load_runs(cfg.experiment, uri)
    assert set(runs["clustering.supervision"]) == {"average", "unsupervised", "supervised"}


def test_anomaly_clustering_table_has_the_published_layout(clustering):
    from analysis.tables import anomaly_clustering_table

    cfg, uri, _, _ = clustering
    table = anomaly_clustering_table(load_scores(cfg.experiment, uri), load_runs(cfg.experiment, uri))
    assert list(table.index) == ["resnet18", "vit_tiny"]
    assert list(table.columns.get_level_values("supervision").unique()) == ["average", "unsupervised", "supervised"]
    assert set(table.columns.get_level_values("score")) == {"nmi", "ari", "f1_micro"}
    result = build_report(cfg.experiment, clustering[2] / "report", uri)
    assert "Anomaly clustering" in result["index"].read_text()
