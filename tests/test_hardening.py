"""Issue 18's bad-input table and "data files must never run code": every row refused with one line, exit 2, before
Ray starts; a crafted pickle cannot run code; two launches on a brand-new sqlite store do not race."""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from experiments.data import DatasetCorruptError, load_cifar10
from experiments.data.safe_pickle import UnsafePickleError, load_cifar_batch, restricted_loads
from sweeper.cli import main
from sweeper.config import bundled_config
from tests.test_data import write_fake_cifar

DEMO = str(bundled_config("demo"))
REPO = Path(__file__).resolve().parents[1]


def _refused(argv, needle, tmp_path, monkeypatch, capsys) -> str:
    """Run the CLI in-process; it must exit 2 with one ``sweeper: error:`` line holding ``needle``, Ray not started
    (``init_ray`` / ``ray.init`` never called: the session's Ray may be up, so ``ray.is_initialized`` cannot tell)."""
    import ray

    import sweeper.tune

    starts: list = []
    monkeypatch.setattr(sweeper.tune, "init_ray", lambda *a, **k: starts.append(a))
    monkeypatch.setattr(ray, "init", lambda *a, **k: starts.append(a))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("sweeper: error:"), err
    assert needle in err, err
    assert starts == []
    return err


@pytest.mark.parametrize(
    "setting, needle",
    [
        ("resources.gpus_per_trial=-1", "resources.gpus_per_trial"),
        ("resources.gpus_per_trial=-0.5", "resources.gpus_per_trial"),
        ("resources.cpus_per_bootstrap_worker=-1", "resources.cpus_per_bootstrap_worker"),
        ("resources.cpus_per_bootstrap_worker=0", "resources.cpus_per_bootstrap_worker"),
        ("resources.bootstrap_workers=1.5", "resources.bootstrap_workers"),
        ("resources.bootstrap_workers=-2", "resources.bootstrap_workers"),
        ("resources.max_concurrent_trials=0", "resources.max_concurrent_trials"),
        ("resources.max_concurrent_trials=-1", "resources.max_concurrent_trials"),
    ],
)
def test_bad_resources_are_refused(setting, needle, tmp_path, monkeypatch, capsys):
    _refused(["run", DEMO, "--set", setting], needle, tmp_path, monkeypatch, capsys)
    assert not (tmp_path / "mlflow.db").exists()


def test_zero_and_fractional_gpus_are_accepted(capsys):
    for g in ("0", "0.5", "auto"):
        assert main(["validate", DEMO, "--set", f"resources.gpus_per_trial={g}"]) == 0
    capsys.readouterr()


def _cifar_argv(root) -> list[str]:
    return ["validate", DEMO, "--set", "dataset.name=cifar10", "--set", f"dataset.root={root}"]


def test_corrupted_cifar_batch_names_the_file(tmp_path, monkeypatch, capsys):
    write_fake_cifar(tmp_path / "data")
    batch = tmp_path / "data" / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    argv = [*_cifar_argv(tmp_path / "data"), "--set", "grid.train_class=[cat]", "--set", "score.sample_size=2"]
    err = _refused(argv, f"{batch} is not a CIFAR-10 batch", tmp_path, monkeypatch, capsys)
    assert "Traceback" not in err


def test_missing_cifar_root_is_reported_before_the_digits_classes(tmp_path, monkeypatch, capsys):
    """The demo's grid still holds the digits' classes '0' and '1': the missing data is the error, not the class."""
    missing = tmp_path / "nowhere"
    err = _refused(
        _cifar_argv(missing), f"CIFAR-10 not found at {missing}/cifar-10-batches-py", tmp_path, monkeypatch, capsys
    )
    assert "torchvision.datasets.CIFAR10" in err and "'0'" not in err
    # no root at all: the same order
    argv = ["validate", DEMO, "--set", "dataset.name=cifar10"]
    _refused(argv, "dataset 'cifar10' needs dataset.root", tmp_path, monkeypatch, capsys)


def test_unknown_class_of_a_present_cifar_is_still_a_class_error(tmp_path, monkeypatch, capsys):
    write_fake_cifar(tmp_path / "data")
    _refused(_cifar_argv(tmp_path / "data"), "unknown train_class '0'", tmp_path, monkeypatch, capsys)


def test_resume_of_an_unknown_sweep_is_refused_before_ray(tmp_path, monkeypatch, capsys):
    argv = ["resume", "NO_SUCH_SWEEP", "--storage-path", str(tmp_path / "ray_results")]
    _refused(argv, "no sweep named 'NO_SUCH_SWEEP'", tmp_path, monkeypatch, capsys)


# ------------------------------------------------------------------------------------------- data files run no code


class _RunsShell:
    """A pickle payload: unpickling it calls ``os.system(command)`` (what a crafted CIFAR batch would do)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_crafted_cifar_batch_cannot_run_code(tmp_path, monkeypatch, capsys):
    write_fake_cifar(tmp_path / "data")
    marker = tmp_path / "pwned"
    batch = tmp_path / "data" / "cifar-10-batches-py" / "data_batch_1"
    payload = {"data": _RunsShell(f"touch {marker}"), "labels": [0]}
    batch.write_bytes(pickle.dumps(payload, protocol=2))
    # the payload works: plain pickle runs it (so the refusal below is the unpickler's doing, not a broken payload)
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_RunsShell(f"touch {probe}")))
    assert probe.exists()
    argv = [*_cifar_argv(tmp_path / "data"), "--set", "grid.train_class=[cat]", "--set", "score.sample_size=2"]
    err = _refused(argv, "unsafe pickle: refused global posix.system", tmp_path, monkeypatch, capsys)
    assert str(batch) in err
    assert not marker.exists()


@pytest.mark.parametrize("name", ["builtins.eval", "subprocess.Popen", "numpy.load", "torch.load"])
def test_restricted_unpickler_refuses_any_other_global(name):
    module, attr = name.rsplit(".", 1)
    crafted = b"c" + module.encode() + b"\n" + attr.encode() + b"\n" + b"(S'1'\ntR."  # protocol 0: GLOBAL, call
    with pytest.raises(UnsafePickleError, match=f"refused global {module}.{attr}"):
        restricted_loads(crafted)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_restricted_unpickler_reads_real_batches_of_every_protocol(tmp_path, protocol):
    """What a CIFAR batch holds (dict, list, bytes, str, uint8 arrays) reads back equal to ``pickle.loads``."""
    rng = np.random.default_rng(protocol)
    batch = {
        "batch_label": "training batch 1 of 5",
        "labels": [int(v) for v in rng.integers(0, 10, 7)],
        "data": rng.integers(0, 256, (7, 3072), dtype=np.uint8),
        "filenames": ["a.png"] * 7,
        b"raw": b"\x00\x01",
    }
    blob = pickle.dumps(batch, protocol=protocol)
    got, want = restricted_loads(blob), pickle.loads(blob)
    assert got.keys() == want.keys() and np.array_equal(got["data"], want["data"]) and got["labels"] == want["labels"]
    path = tmp_path / "b"
    path.write_bytes(blob)
    images, labels = load_cifar_batch(path)
    # rows are the R, G, B planes of a 32 x 32 image (independent of the loader: plain numpy indexing)
    assert np.array_equal(images[3, 5, 7], batch["data"][3, [5 * 32 + 7, 1024 + 5 * 32 + 7, 2048 + 5 * 32 + 7]])
    assert labels.tolist() == batch["labels"]


@pytest.mark.parametrize(
    "content, why",
    [
        ({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, "uint8 N x 3072"),
        ({"data": np.zeros((2, 3072), np.float32), "labels": [0, 1]}, "uint8 N x 3072"),
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 11]}, "in 0..9"),
        ([1, 2, 3], "not a dict"),
    ],
)
def test_a_pickle_of_the_wrong_shape_is_not_a_batch(tmp_path, content, why):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(content))
    with pytest.raises(DatasetCorruptError, match=why):
        load_cifar_batch(path)


def test_corrupt_meta_is_refused(tmp_path):
    write_fake_cifar(tmp_path)
    meta = tmp_path / "cifar-10-batches-py" / "batches.meta"
    meta.write_bytes(pickle.dumps(_RunsShell("true")))
    with pytest.raises(DatasetCorruptError, match=r"batches\.meta"):
        load_cifar10(str(tmp_path))


def test_corrupt_svhn_and_mnist_files_name_the_file(tmp_path):
    from experiments.data import load_mnist, load_svhn
    from experiments.data.svhn_mnist import MNIST_FILES, SVHN_FILES

    for name in SVHN_FILES:
        (tmp_path / name).write_bytes(b"MATLAB 5.0 MAT-file" + os.urandom(300))
    with pytest.raises(DatasetCorruptError, match=re.escape(f"{tmp_path / SVHN_FILES[0]} is not an SVHN .mat file")):
        load_svhn(str(tmp_path))
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        (raw / name).write_bytes(os.urandom(64))
    with pytest.raises(DatasetCorruptError, match="is not an MNIST idx file"):
        load_mnist(str(tmp_path))


# ---------------------------------------------------------------------------------- the sqlite schema-creation race

_LAUNCH = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from sweeper.cli import _prepare
    from sweeper.tune import plan_sweep
    from mlflow.tracking import MlflowClient
    from sweeper import tracking
    ready, go = Path(sys.argv[1]), Path(sys.argv[2])
    ready.touch()
    while not go.exists():
        time.sleep(0.002)
    cfg, uri = _prepare(sys.argv[3], sys.argv[4:])
    plan = plan_sweep(cfg, uri)
    tracking.get_or_create_experiment(MlflowClient(uri), cfg.experiment, uri)
    print("planned", len(plan.trials))
    """
)


@pytest.mark.slow
def test_two_launches_on_a_brand_new_sqlite_store_do_not_race(tmp_path):
    """Everything ``sweeper run`` does before Ray starts (validate, preflight, check the store, plan, create the
    experiment), in two processes released at the same instant (once both have imported everything) on a store that
    does not exist yet: both get through, and there is one experiment."""
    db = tmp_path / "mlflow.db"
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _LAUNCH, str(tmp_path / f"ready{i}"), str(go), DEMO, "experiment=race"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    deadline = time.time() + 300
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)) and time.time() < deadline:
        time.sleep(0.05)
    assert not db.exists()
    go.touch()
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert "planned 8" in out

    from mlflow.tracking import MlflowClient

    exps = [e for e in MlflowClient(f"sqlite:///{db}").search_experiments() if e.name == "race"]
    assert len(exps) == 1 and exps[0].tags["mlflow.experimentKind"] == "custom_model_development"
