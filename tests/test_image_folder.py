"""``dataset.name: image_folder``: folders and archives of JPEG / PNG images written here with PIL, loaded through the
registry; pixels checked against PIL's own decoding; the decoded-image cache (hit, invalidation, atomic, no code);
every refusal through the CLI (exit 2, one line, before Ray and MLflow). One slow test runs a real sweep on real
CIFAR-10 JPEGs when ``SWEEPER_CIFAR10_JPEG`` names the archive."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from experiments.data import DATASETS, DatasetCorruptError, DatasetNotFoundError
from experiments.data.image_folder import default_cache_dir, list_image_folder_classes, load_image_folder
from sweeper.cli import main
from sweeper.config import parse_config

CLASSES = ("zebra", "Ant", "bee")  # sorted: Ant, bee, zebra (the folder names, byte order)
LOG = "experiments.data.image_folder"


def _pixels(seed: int, size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A random image of ``mode`` (``size`` is width, height)."""
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(arr[..., 0] if channels == 1 else arr, mode)


def write_folder(root: Path, per_class: int = 3, classes=CLASSES, size=(32, 32)) -> Path:
    """``root/train/<class>/`` and ``root/test/<class>/``: ``per_class`` images each, PNG and JPEG alternating."""
    seed = 0
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                seed += 1
                _pixels(seed, size).save(root / split / c / f"{k:03d}.{'png' if k % 2 == 0 else 'jpg'}")
    return root


def archive(folder: Path, out: Path, top: str | None = None) -> Path:
    """``folder``'s tree as ``out`` (``.tar``, ``.tar.gz``, ``.zip`` by its name), under folder ``top`` if given."""
    prefix = f"{top}/" if top else ""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if out.suffix == ".zip":
        with zipfile.ZipFile(out, "w") as zf:
            for p in files:
                zf.write(p, prefix + p.relative_to(folder).as_posix())
    else:
        with tarfile.open(out, "w:gz" if out.name.endswith(".gz") else "w") as tf:
            for p in files:
                tf.add(p, prefix + p.relative_to(folder).as_posix())
    return out


def pil_rgb(path: Path, size: int = 32) -> np.ndarray:
    """What the loader must give for ``path``: PIL's RGB decoding, bilinear-resized when not ``size`` square, CHW."""
    with Image.open(path) as img:
        rgb = img.convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb).transpose(2, 0, 1)


def expected(folder: Path, split: str, size: int = 32) -> tuple[np.ndarray, list[int]]:
    """PIL's decoding of every image of ``split``, in the loader's order (sorted classes, then sorted names)."""
    classes = sorted(p.name for p in (folder / split).iterdir())
    images, labels = [], []
    for label, c in enumerate(classes):
        for p in sorted((folder / split / c).iterdir()):
            images.append(pil_rgb(p, size))
            labels.append(label)
    return np.stack(images), labels


def cache_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.npz")) if cache.exists() else []


@pytest.fixture
def folder(tmp_path) -> Path:
    return write_folder(tmp_path / "images")


# --------------------------------------------------------------------------------------------------- layouts, pixels


@pytest.mark.parametrize("kind", ["folder", "data.tar", "data.tar.gz", "data.zip", "top.tar.gz", "top.zip"])
def test_every_layout_loads_pil_s_pixels_with_sorted_folder_classes(kind, folder, tmp_path):
    root = folder if kind == "folder" else archive(folder, tmp_path / kind, "top" if kind.startswith("top") else None)
    assert list_image_folder_classes(str(root)) == ("Ant", "bee", "zebra")
    data = DATASETS["image_folder"].load(str(root), 32, False, cache_dir=tmp_path / "cache")
    assert data.name == "image_folder" and data.class_names == ("Ant", "bee", "zebra")
    for split in ("train", "test"):
        images, labels = expected(folder, split)
        got = getattr(data, f"{split}_images")
        assert got.dtype == torch.uint8 and tuple(got.shape) == (9, 3, 32, 32)
        assert getattr(data, f"{split}_labels").tolist() == labels
        np.testing.assert_array_equal(got.numpy(), images)
    assert data.n_resized == 0
    assert data.class_sizes("train") == {"Ant": 3, "bee": 3, "zebra": 3}


def test_grey_and_rgba_become_rgb_and_other_sizes_are_resized_and_counted(folder, tmp_path):
    _pixels(100, (32, 32), "L").save(folder / "train" / "bee" / "grey.png")
    _pixels(101, (32, 32), "RGBA").save(folder / "train" / "bee" / "alpha.png")
    _pixels(102, (48, 20)).save(folder / "train" / "zebra" / "wide.png")
    _pixels(103, (16, 16), "L").save(folder / "test" / "Ant" / "small.jpg")
    data = load_image_folder(str(folder), 32, cache_dir=tmp_path / "cache")
    assert data.n_resized == 2
    for split in ("train", "test"):
        np.testing.assert_array_equal(getattr(data, f"{split}_images").numpy(), expected(folder, split)[0])
    grey = data.images_of("bee", "train")[-1]  # grey.png sorts last in bee
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    # the count survives the caps (it counts the source's files)
    assert data.subset(max_train_per_class=2, max_test_per_class=1).n_resized == 2
    # another image_size: every 32 x 32 image is resized too (a cache of its own)
    assert load_image_folder(str(folder), 16, cache_dir=tmp_path / "cache").n_resized == 18 + 4 - 1
    assert len(cache_files(tmp_path / "cache")) == 2


# ------------------------------------------------------------------------------------------------------------ cache


def test_a_second_load_reads_the_cache_and_decodes_nothing(folder, tmp_path, caplog):
    cache = tmp_path / "cache"
    first = load_image_folder(str(folder), 32, cache_dir=cache)
    (written,) = cache_files(cache)
    assert not [p for p in cache.iterdir() if p.suffix != ".npz"]  # the temporary file was renamed, not left
    with np.load(written, allow_pickle=False) as npz:  # plain arrays: readable without pickle
        assert npz["train_images"].dtype == np.uint8
    # Overwrite an image with bytes of the same size and give it back its times: the listing (the cache key) is
    # unchanged, so a load that decoded would fail on this file; one that reads the cache returns the old pixels.
    victim = folder / "train" / "Ant" / "000.png"
    st = victim.stat()
    victim.write_bytes(b"\0" * st.st_size)
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    with caplog.at_level(logging.INFO, logger=LOG):
        second = load_image_folder(str(folder), 32, cache_dir=cache)
    assert "images read from the cache" in caplog.text and ": decoded " not in caplog.text
    assert torch.equal(first.train_images, second.train_images) and torch.equal(first.test_labels, second.test_labels)
    assert cache_files(cache) == [written]


def test_a_changed_file_invalidates_the_cache(folder, tmp_path, caplog):
    cache = tmp_path / "cache"
    load_image_folder(str(folder), 32, cache_dir=cache)
    changed = folder / "test" / "zebra" / "001.jpg"
    _pixels(999, (32, 32)).save(changed)
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    with caplog.at_level(logging.INFO, logger=LOG):
        data = load_image_folder(str(folder), 32, cache_dir=cache)
    assert ": decoded " in caplog.text
    np.testing.assert_array_equal(data.test_images.numpy(), expected(folder, "test")[0])
    assert len(cache_files(cache)) == 2
    # an added image too
    _pixels(1000, (32, 32)).save(folder / "test" / "zebra" / "new.png")
    assert len(load_image_folder(str(folder), 32, cache_dir=cache).test_images) == 10


def test_an_archive_with_a_changed_member_is_decoded_again(folder, tmp_path):
    cache = tmp_path / "cache"
    tar = archive(folder, tmp_path / "data.tar")
    load_image_folder(str(tar), 32, cache_dir=cache)
    _pixels(7, (32, 32)).save(folder / "train" / "bee" / "000.png")
    os.utime(folder / "train" / "bee" / "000.png", (1, 1))
    archive(folder, tar)
    data = load_image_folder(str(tar), 32, cache_dir=cache)
    np.testing.assert_array_equal(data.train_images.numpy(), expected(folder, "train")[0])
    assert len(cache_files(cache)) == 2


def test_an_unreadable_cache_file_is_decoded_again_and_rewritten(folder, tmp_path, caplog):
    cache = tmp_path / "cache"
    first = load_image_folder(str(folder), 32, cache_dir=cache)
    (written,) = cache_files(cache)
    written.write_bytes(b"not a zip")
    with caplog.at_level(logging.INFO, logger=LOG):
        again = load_image_folder(str(folder), 32, cache_dir=cache)
    assert " is unreadable (" in caplog.text and ": decoded " in caplog.text
    assert torch.equal(first.train_images, again.train_images)
    with np.load(written, allow_pickle=False) as npz:
        assert len(npz["train_labels"]) == 9


@pytest.mark.parametrize(
    "spoil, warning",
    [
        ({"class_names": np.array([object()], dtype=object)}, " is unreadable ("),  # a pickle: never loaded
        ({"train_labels": np.full(9, 7, np.int64)}, "wrong shape or type"),
        ({"test_images": np.zeros((9, 32, 32, 3), np.uint8)}, "wrong shape or type"),
    ],
)
def test_a_spoilt_cache_file_is_not_used(spoil, warning, folder, tmp_path, caplog):
    """A cache file with the right key but an object array (what a crafted cache would carry), labels out of range
    or images of the wrong layout is decoded again, never unpickled or trusted."""
    cache = tmp_path / "cache"
    first = load_image_folder(str(folder), 32, cache_dir=cache)
    (written,) = cache_files(cache)
    with np.load(written, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    with written.open("wb") as fh:
        np.savez(fh, **{**arrays, **spoil})
    with caplog.at_level(logging.INFO, logger=LOG):
        data = load_image_folder(str(folder), 32, cache_dir=cache)
    assert warning in caplog.text and ": decoded " in caplog.text
    assert torch.equal(data.test_images, first.test_images) and torch.equal(data.train_labels, first.train_labels)


def test_the_default_cache_dir_follows_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "embedding-sweeper" / "image_folder"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "embedding-sweeper" / "image_folder"


# ------------------------------------------------------------------------------------------------- config, listing


def _raw(root, tmp_path, **dataset) -> dict:
    return {
        "name": "folder-sweep",
        "experiment": "image-folder",
        "dataset": {"name": "image_folder", "root": str(root), "cache_dir": str(tmp_path / "cache"), **dataset},
        "grid": {"model": ["simclr"], "train_class": "all"},
        "train": {"epochs": 1, "batch_size": 4},
        "score": {"n_resamples": 2, "sample_size": 2, "metrics": ["hausdorff"]},
        "tune": {"storage_path": str(tmp_path / "ray_results")},
    }


def test_config_classes_come_from_the_root_by_listing_only(folder, tmp_path):
    cfg = parse_config(_raw(archive(folder, tmp_path / "d.zip", "top"), tmp_path))
    assert cfg.class_names() == ["Ant", "bee", "zebra"]
    assert [t.train_class for t in cfg.trials()] == ["Ant", "bee", "zebra"]
    assert cache_files(tmp_path / "cache") == []  # validating decoded nothing
    assert "cache_dir" not in cfg.result_settings()["dataset"]
    with pytest.raises(Exception, match=r"unknown train_class 'Cat'.*valid: Ant, bee, zebra"):
        parse_config({**_raw(folder, tmp_path), "grid": {"model": ["simclr"], "train_class": ["Cat"]}})


def _refused(argv, needle, tmp_path, monkeypatch, capsys, ray_starts) -> str:
    """The CLI in-process: exit 2, one ``sweeper: error:`` line holding ``needle``, Ray not started, no MLflow
    store written."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("sweeper: error:") and needle in err, err
    assert ray_starts == [] and not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()
    return err


def _break(folder: Path, how: str) -> str:
    """Spoil ``folder`` one way; the text the refusal must hold."""
    if how == "missing split":
        shutil.rmtree(folder / "test")
        return "has no test/ folder"
    if how == "different classes":
        (folder / "test" / "bee").rename(folder / "test" / "wasp")
        return "train/ and test/ hold different classes (only in train/: bee; only in test/: wasp)"
    if how == "empty class":
        for p in (folder / "train" / "bee").iterdir():
            p.unlink()
        (folder / "train" / "bee" / "notes.txt").write_text("no images here")
        return "class 'bee' of train/ holds no JPEG or PNG image"
    bad = folder / "test" / "zebra" / "002.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    return f"{bad} cannot be decoded as a JPEG or PNG image"


@pytest.mark.parametrize("how", ["missing split", "different classes", "empty class", "undecodable"])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_each_refusal_is_one_line_and_exit_2_before_ray_and_mlflow(
    how, command, folder, tmp_path, monkeypatch, capsys, ray_starts
):
    needle = _break(folder, how)
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(_raw(folder, tmp_path)))
    _refused([command, str(config)], needle, tmp_path, monkeypatch, capsys, ray_starts)


@pytest.mark.parametrize("kind", ["data.tar.gz", "data.zip"])
def test_an_undecodable_archive_member_is_named(kind, folder, tmp_path, monkeypatch, capsys, ray_starts):
    (folder / "train" / "Ant" / "001.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    root = archive(folder, tmp_path / kind, "top")
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(_raw(root, tmp_path)))
    needle = f"{root} member top/train/Ant/001.jpg cannot be decoded"
    _refused(["run", str(config)], needle, tmp_path, monkeypatch, capsys, ray_starts)


def test_a_missing_root_and_a_non_archive_file_are_refused(tmp_path, monkeypatch, capsys, ray_starts):
    demo = ["validate", str(Path(__file__).parents[1] / "experiments" / "configs" / "demo.yaml")]
    argv = [*demo, "--set", "dataset.name=image_folder"]
    _refused(argv, "dataset 'image_folder' needs dataset.root", tmp_path, monkeypatch, capsys, ray_starts)
    argv = [*argv, "--set", f"dataset.root={tmp_path / 'nowhere'}"]
    _refused(argv, f"image_folder root {tmp_path / 'nowhere'} not found", tmp_path, monkeypatch, capsys, ray_starts)
    (tmp_path / "data.rar").write_bytes(b"x")
    argv = [*demo, "--set", "dataset.name=image_folder", "--set", f"dataset.root={tmp_path / 'data.rar'}"]
    _refused(argv, "is a file but not a .tar, .tar.gz, .tgz, .zip archive", tmp_path, monkeypatch, capsys, ray_starts)
    (tmp_path / "broken.tar.gz").write_bytes(b"\x1f\x8b not gzip")
    argv = [*demo, "--set", "dataset.name=image_folder", "--set", f"dataset.root={tmp_path / 'broken.tar.gz'}"]
    _refused(argv, "broken.tar.gz is not a readable tar archive", tmp_path, monkeypatch, capsys, ray_starts)


def test_the_loader_raises_the_data_errors_the_cli_reports(folder, tmp_path):
    with pytest.raises(DatasetNotFoundError):
        load_image_folder(str(tmp_path / "nowhere"))
    _break(folder, "undecodable")
    with pytest.raises(DatasetCorruptError, match=r"002\.png cannot be decoded"):
        load_image_folder(str(folder), cache_dir=tmp_path / "cache")
    assert cache_files(tmp_path / "cache") == []


def test_the_console_script_refuses_an_undecodable_file_before_anything_starts(folder, tmp_path):
    """The installed ``sweeper`` command, as a user runs it: ``sweeper run`` exits 2 with one line naming the file
    and leaves no MLflow store or Ray session behind."""
    needle = _break(folder, "undecodable")
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(_raw(folder, tmp_path)))
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    exe = Path(sys.executable).with_name("sweeper")
    proc = subprocess.run(
        [str(exe), "run", str(config)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"sweeper: error: {needle}"]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "ray_results").exists()


# ------------------------------------------------------------------------------------------- real CIFAR-10 (slow)


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("SWEEPER_CIFAR10_JPEG"),
    reason="SWEEPER_CIFAR10_JPEG is unset (set it to the path of ../shared/data/cifar10-jpeg.tar.gz to run this test)",
)
def test_a_real_sweep_on_cifar10_jpegs(local_ray, tmp_path, monkeypatch):
    """A one-epoch SimCLR ``sweeper run`` on a few hundred real CIFAR-10 JPEGs read from the archive (all 60 000
    decoded once into the cache by the preflight; the trial reads the cache)."""
    from mlflow.tracking import MlflowClient

    archive_path = os.environ["SWEEPER_CIFAR10_JPEG"]
    raw = _raw(archive_path, tmp_path, classes=["cat", "dog", "ship"], max_train_per_class=120, max_test_per_class=40)
    raw["grid"]["train_class"] = ["cat"]
    raw["score"] = {"n_resamples": 4, "sample_size": 20, "metrics": ["hausdorff", "euclidean"]}
    raw["train"] = {"epochs": 1, "batch_size": 32}
    raw["resources"] = {"max_concurrent_trials": 1}
    config = tmp_path / "cifar.yaml"
    config.write_text(yaml.safe_dump(raw))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(config), "--no-report", "--set", f"tracking.uri={uri}"]) == 0
    (written,) = cache_files(tmp_path / "cache")
    with np.load(written, allow_pickle=False) as npz:
        assert npz["train_images"].shape == (50000, 3, 32, 32) and npz["test_images"].shape == (10000, 3, 32, 32)
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("image-folder").experiment_id])
    (trial,) = [r for r in runs if r.data.tags.get("sweeper.role") == "trial"]
    assert trial.info.status == "FINISHED" and trial.data.params["train_class"] == "cat"
    assert trial.data.params["images_resized"] == "0"  # every CIFAR-10 file is 32 x 32
    assert np.isfinite(client.get_metric_history(trial.info.run_id, "loss")[0].value)
    assert {f"score.hausdorff.{c}.mean" for c in ("cat", "dog", "ship")} <= set(trial.data.metrics)


def test_pools_decode_the_same_pixels_and_name_the_first_bad_file(folder, tmp_path):
    """Two processes, two threads and the calling thread agree (chunks of 4 images, so several per worker); with
    two undecodable files, the first in listing order is named whichever worker finishes first."""
    from experiments.data.image_folder import decode_layout
    from experiments.data.image_folder_source import scan

    layout = scan(str(folder))
    serial, n = decode_layout(layout, 32, workers=1)
    for pool in ("process", "thread"):
        images, resized = decode_layout(layout, 32, workers=2, pool=pool, chunk_size=4)
        np.testing.assert_array_equal(images, serial)
        assert resized == n == 0
    for name in ("train/bee/002.png", "test/Ant/000.png"):
        (folder / name).write_bytes(b"broken")
    with pytest.raises(DatasetCorruptError, match=r"train/bee/002\.png cannot be decoded"):
        decode_layout(scan(str(folder)), 32, workers=2, chunk_size=2)
