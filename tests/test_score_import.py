"""``sweeper score``: embeddings made elsewhere, scored and logged exactly like a trial; bad files refused before Ray
starts and before any MLflow run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from scipy.spatial.distance import cdist, directed_hausdorff

from analysis import load_scores
from sweeper.cli import main

RNG = np.random.default_rng(11)
CLASSES = {"cat": (0.0, 40), "dog": (0.3, 30), "car": (2.0, 35)}


def write_proj18_csvs(folder, reference_name="reference.csv"):
    """proj18's layout: one CSV per class from ``DataFrame.to_csv``, image file names as the index."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "eval").mkdir()
    clouds = {c: RNG.normal(shift, size=(n, 6)) for c, (shift, n) in CLASSES.items()}
    reference = RNG.normal(0.0, size=(50, 6))
    for name, x in {**{f"eval/{c}": x for c, x in clouds.items()}, "reference": reference}.items():
        pd.DataFrame(x, index=[f"{i:04d}.png" for i in range(len(x))]).to_csv(folder / f"{name}.csv")
    return reference, clouds


@pytest.mark.slow
def test_sweeper_score_logs_like_a_trial_and_loads_back(local_ray, tmp_path, monkeypatch):
    reference, clouds = write_proj18_csvs(tmp_path / "files")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    args = ["score", "--reference", str(tmp_path / "files/reference.csv"), "--eval", str(tmp_path / "files/eval")]
    args += ["--train-class", "cat", "--experiment", "imported", "--name", "csvs", "--no-report"]
    args += [
        "--set",
        "score.n_resamples=20",
        "--set",
        "score.sample_size=10",
        "--set",
        "score.metrics=[hausdorff,euclidean,knn_auroc]",
    ]
    assert main(args) == 0
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("imported")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("sweeper.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("sweeper.role") == "trial"]
    assert len(parents) == 1 and len(children) == 1 and children[0].info.status == "FINISHED"
    run = children[0]
    assert run.data.tags["sweeper.trial_key"] == "model=imported/train_class=cat/augmentation=none/seed=0"
    assert run.data.params["family"] == "imported" and run.data.params["l2_normalize"] == "False"
    assert "reference.csv" in run.data.params["source.sha256"] and "car.csv" in run.data.params["source.sha256"]
    scores = load_scores("imported", uri)
    assert set(scores.eval_class[scores.metric == "hausdorff"]) == {"cat", "dog", "car"}
    assert parents[0].data.metrics["n_finished"] == 1
    # the logged embeddings are the files' values, stored as read (no normalisation)
    test = pd.read_parquet(client.download_artifacts(run.info.run_id, "embeddings/test.parquet", str(tmp_path)))
    dims = [c for c in test.columns if c.startswith("dim_")]
    np.testing.assert_allclose(test.loc[test.class_name == "dog", dims].to_numpy(), clouds["dog"], rtol=1e-6)
    # the far class is the farthest by Hausdorff (a sanity check of the scoring on imported data)
    hd = scores[scores.metric == "hausdorff"].set_index("eval_class")["mean"]
    assert hd["car"] > hd["dog"] and hd["car"] > hd["cat"]
    full_hd = max(directed_hausdorff(reference, clouds["car"])[0], directed_hausdorff(clouds["car"], reference)[0])
    assert full_hd > 0 and cdist(reference, clouds["car"]).sum() > 0
    # a second run of the same sweep scores nothing again
    assert main(args) == 0
    assert len([r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("sweeper.role") == "trial"]) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train_class": "horse"}, "train_class 'horse' is not among the evaluation classes"),
        ({"eval": "empty"}, "no embedding files"),
        ({"reference": "ref.txt"}, "unknown embedding format '.txt'"),
        ({"reference": "wide.npy"}, "dimensions differ"),
        ({"reference": "nan.csv"}, "row '0001.png' has a NaN"),
        ({"reference": "text.csv"}, "non-numeric column"),
    ],
)
def test_bad_files_are_one_line_exit_2_before_any_run(tmp_path, monkeypatch, capsys, change, message):
    write_proj18_csvs(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "ref.txt").write_text("1 2 3")
    np.save(tmp_path / "wide.npy", np.ones((5, 9)))
    nan = pd.DataFrame(np.ones((3, 6)), index=["0000.png", "0001.png", "0002.png"])
    nan.iloc[1, 0] = np.nan
    nan.to_csv(tmp_path / "nan.csv")
    text = pd.DataFrame(np.ones((3, 6)))
    text[2] = "x"
    text.to_csv(tmp_path / "text.csv")
    opts = {"reference": "reference.csv", "eval": "eval", "train_class": "cat", **change}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    ref, evals = str(tmp_path / opts["reference"]), str(tmp_path / opts["eval"])
    code = main(["score", "--reference", ref, "--eval", evals, "--train-class", opts["train_class"], "--no-report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "mlflow.db").exists(), "no MLflow store may be touched on bad input"
