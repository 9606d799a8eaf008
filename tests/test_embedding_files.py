"""Reading embedding files made anywhere (CSV as proj18 saved them, Parquet, .npy, .npz), refusing bad ones, and
the full-cloud values on them against scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist, directed_hausdorff

from experiments.embedding_files import EmbeddingFileError, read_cloud, read_clouds
from experiments.file_hash import file_sha256
from experiments.metrics import METRICS
from experiments.metrics.full_cloud import AUTO, full_cloud_values, resolve_full_metrics

RNG = np.random.default_rng(7)
REFERENCE = RNG.normal(size=(30, 5))
CLOUDS = {"cat": RNG.normal(size=(20, 5)), "dog": RNG.normal(0.5, size=(25, 5))}


def proj18_csv(path, x):
    """A cloud as proj18 wrote it: ``DataFrame.to_csv`` with image file names as the index, dims as the header."""
    frame = pd.DataFrame(x, columns=[str(i) for i in range(x.shape[1])], index=[f"{i:04d}.png" for i in range(len(x))])
    frame.to_csv(path)


def test_proj18_style_csv_folder_with_a_file_name_index(tmp_path):
    proj18_csv(tmp_path / "reference.csv", REFERENCE)
    folder = tmp_path / "eval"
    folder.mkdir()
    for name, x in CLOUDS.items():
        proj18_csv(folder / f"{name}.csv", x)
    np.testing.assert_array_equal(read_cloud(tmp_path / "reference.csv"), REFERENCE)
    got = read_clouds(folder)
    assert sorted(got) == ["cat", "dog"]
    for name, x in CLOUDS.items():
        np.testing.assert_array_equal(got[name], x)


def test_csv_with_a_plain_integer_index_and_one_table_with_a_label_column(tmp_path):
    pd.DataFrame(REFERENCE).to_csv(tmp_path / "ref.csv")  # unnamed integer index column
    np.testing.assert_array_equal(read_cloud(tmp_path / "ref.csv"), REFERENCE)
    table = pd.concat([pd.DataFrame(x).assign(label=name) for name, x in CLOUDS.items()], ignore_index=True)
    table.columns = [str(c) for c in table.columns]
    table.to_csv(tmp_path / "eval.csv", index=False)
    got = read_clouds(tmp_path / "eval.csv")
    for name, x in CLOUDS.items():
        np.testing.assert_array_equal(got[name], x)


def test_parquet_in_the_project_layout_and_a_generic_parquet(tmp_path):
    frames = []
    for name, x in CLOUDS.items():
        f = pd.DataFrame(x, columns=[f"dim_{i}" for i in range(5)])
        frames.append(f.assign(index=range(len(x)), label=0, class_name=name, augmentation="none"))
    pd.concat(frames, ignore_index=True).to_parquet(tmp_path / "test.parquet")
    got = read_clouds(tmp_path / "test.parquet")
    for name, x in CLOUDS.items():
        np.testing.assert_array_equal(got[name], x)
    pd.DataFrame(REFERENCE, columns=list("abcde")).to_parquet(tmp_path / "ref.parquet")
    np.testing.assert_array_equal(read_cloud(tmp_path / "ref.parquet"), REFERENCE)


def test_npy_per_class_folder_and_npz_per_class_key(tmp_path):
    np.save(tmp_path / "ref.npy", REFERENCE)
    (tmp_path / "eval").mkdir()
    for name, x in CLOUDS.items():
        np.save(tmp_path / "eval" / f"{name}.npy", x)
    np.savez(tmp_path / "eval.npz", **CLOUDS)
    np.testing.assert_array_equal(read_cloud(tmp_path / "ref.npy"), REFERENCE)
    for got in (read_clouds(tmp_path / "eval"), read_clouds(tmp_path / "eval.npz")):
        assert sorted(got) == ["cat", "dog"]
        for name, x in CLOUDS.items():
            np.testing.assert_array_equal(got[name], x)
    assert file_sha256(tmp_path / "ref.npy") != file_sha256(tmp_path / "eval.npz")


def test_an_object_array_is_refused_and_never_unpickled(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(EmbeddingFileError, match="object array"):
        read_cloud(tmp_path / "obj.npy")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: (d / "ref.txt").write_text("1 2 3"), "unknown embedding format '.txt'"),
        (
            lambda d: pd.DataFrame({"a": [1.0, np.nan], "b": [2.0, 3.0]}, index=["x.png", "y.png"]).to_csv(
                d / "ref.csv"
            ),
            "row 'y.png' has a NaN",
        ),
        (lambda d: np.save(d / "ref.npy", np.array([[1.0, 2.0], [np.inf, 0.0]])), "row 1 has a NaN or infinite"),
        (lambda d: np.save(d / "ref.npy", np.zeros((0, 3))), "empty cloud"),
        (lambda d: pd.DataFrame({"a": [1.0], "b": ["x"], "c": [2.0]}).to_csv(d / "ref.csv"), "non-numeric column 'b'"),
    ],
)
def test_bad_reference_files_are_refused_naming_the_file(tmp_path, make, message):
    make(tmp_path)
    path = next(tmp_path.iterdir())
    with pytest.raises(EmbeddingFileError, match=message) as err:
        read_cloud(path)
    assert str(path) in str(err.value)


def test_bad_evaluation_sets_are_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no embeddings here")
    with pytest.raises(EmbeddingFileError, match="no embedding files"):
        read_clouds(empty)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    np.save(mixed / "cat.npy", np.ones((3, 4)))
    np.save(mixed / "dog.npy", np.ones((3, 5)))
    with pytest.raises(EmbeddingFileError, match="dimensions differ: 'cat' has 4, 'dog' has 5"):
        read_clouds(mixed)
    pd.DataFrame({"a": [1.0], "b": [2.0]}).to_csv(tmp_path / "nolabel.csv", index=False)
    with pytest.raises(EmbeddingFileError, match="needs a 'class_name' or 'label' column"):
        read_clouds(tmp_path / "nolabel.csv")
    (tmp_path / "cls").mkdir()
    pd.DataFrame(columns=["a", "b"]).to_csv(tmp_path / "cls" / "cat.csv", index=False)
    with pytest.raises(EmbeddingFileError, match="empty cloud"):
        read_clouds(tmp_path / "cls")


def test_full_cloud_values_equal_scipy_on_read_files(tmp_path):
    proj18_csv(tmp_path / "ref.csv", REFERENCE)
    np.savez(tmp_path / "eval.npz", **CLOUDS)
    ref, clouds = read_cloud(tmp_path / "ref.csv"), read_clouds(tmp_path / "eval.npz")
    metrics = resolve_full_metrics("auto", list(METRICS))
    assert metrics == [m for m in METRICS if m in AUTO] and "mtopdiv" not in metrics
    full = full_cloud_values(ref, clouds, metrics, METRICS)
    for name, x in clouds.items():
        hd = max(directed_hausdorff(ref, x)[0], directed_hausdorff(x, ref)[0])
        assert full.values[("hausdorff", name)] == pytest.approx(hd, rel=1e-12)
        assert full.values[("euclidean", name)] == pytest.approx(cdist(ref, x).sum(), rel=1e-12)
        assert full.values[("euclidean_mean", name)] == pytest.approx(cdist(ref, x).mean(), rel=1e-12)
        d = cdist(ref, x)
        assert full.values[("chamfer", name)] == pytest.approx(d.min(axis=1).mean() + d.min(axis=0).mean(), rel=1e-12)
    assert full.skipped == []


def test_full_mtopdiv_only_when_listed_and_nan_past_its_size_limit():
    big = np.random.default_rng(1).normal(size=(1_001, 3))
    assert resolve_full_metrics(["mtopdiv", "hausdorff"], ["hausdorff", "mtopdiv"]) == ["hausdorff", "mtopdiv"]
    full = full_cloud_values(big, {"x": big[:10]}, ["mtopdiv"], METRICS)
    assert np.isnan(full.values[("mtopdiv", "x")])
    assert "limit 1000 points" in full.skipped[0] and "class x" in full.skipped[0]
