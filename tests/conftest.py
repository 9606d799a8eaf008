"""Shared fixtures: one local Ray for the whole test session; MLflow stores under pytest's tmp_path; one run of the
real ``sweeper demo`` shared by the tests that read its store."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# One intra-op thread per test process (torch's OpenMP pool, BLAS): the suite runs one xdist worker per core and CI
# runs the cluster step beside it, so the cores are always taken, and a second thread mostly spins in OpenMP barriers
# while the other core is busy (tests/test_models_train.py beside one busy core, 2 cores: 41 s wall and 37 CPU-s with
# two threads, 20 s and 19 CPU-s with one). The Ray instances and subprocesses the tests start inherit it; a trial
# still sets its own count from `resources.cpus_per_trial`. Set OMP_NUM_THREADS yourself to override.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_addoption(parser):
    parser.addoption(
        "--cluster",
        action="store_true",
        help="run the multi-node cluster tests (marked `cluster`); .ci/run runs them as their own step",
    )


#: Test files by decreasing run time (measured, BENCHMARKS.md "Test tiers"), collected first. pytest-xdist's
#: ``--dist loadfile`` then orders the files by their number of tests (a stable sort), so this order breaks its ties;
#: with ``--no-loadscope-reorder`` it would be the hand-out order (that run was the slowest measured, BENCHMARKS.md).
LONGEST_FIRST = (
    "test_faults.py",
    "test_concurrent_trials.py",
    "test_demo.py",
    "test_sweep.py",
    "test_analysis.py",
    "test_tracking_servers.py",
    "test_families_sweep.py",
    "test_gpu_check.py",
    "test_ray_jobs.py",
    "test_metrics_fast.py",
    "test_overhead.py",
    "test_report_summary.py",
    "test_scoring_roles.py",
    "test_metric_device.py",
    "test_odm.py",
    "test_cluster_resources.py",
    "test_scoring_sweep.py",
    "test_labelled_models.py",
    "test_metrics.py",
    "test_hardening.py",
    "test_config.py",
    "test_frozen.py",
    "test_score_import.py",
)


def pytest_collection_modifyitems(config, items):
    """The longest test files first (:data:`LONGEST_FIRST`; a stable sort, so the order within a file stays).
    Tests marked ``cluster`` (``ray up`` over SSH on loopback nodes, S3 through moto) run only with ``--cluster``:
    ``.ci/run`` runs them as a step of their own, beside the suite."""
    rank = {name: k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
    if config.getoption("--cluster"):
        return
    skip = pytest.mark.skip(
        reason="a cluster test: run with `python -m pytest -m cluster --cluster -n 0` (its own CI step)"
    )
    for item in items:
        if "cluster" in item.keywords:
            item.add_marker(skip)


os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def _machine_busy_cpu_s():
    """Busy CPU-seconds of the whole machine since boot (``/proc/stat``: user + nice + system + irq + softirq), or
    0.0 where there is no ``/proc/stat``."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(v) for v in fh.readline().split()[1:8]]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


_LAST_BUSY = [_machine_busy_cpu_s()]


def pytest_runtest_logreport(report):
    """With ``SWEEPER_TEST_TIMES=FILE``, append every test phase's duration to FILE as it ends (tab-separated:
    seconds, phase, outcome, test id, then the machine's busy CPU-seconds since the previous phase ended: with
    ``-n 0`` that is the phase's own CPU, Ray's processes included), so that a long or interrupted run still shows
    where its time went."""
    path = os.environ.get("SWEEPER_TEST_TIMES")
    if path and not hasattr(report, "node"):  # under pytest-xdist, once (the worker's), not again in the controller
        busy = _machine_busy_cpu_s()
        cpu, _LAST_BUSY[0] = busy - _LAST_BUSY[0], busy
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{report.duration:.2f}\t{report.when}\t{report.outcome}\t{report.nodeid}\t{cpu:.1f}\n")


def start_session_ray():
    """Start the shape of Ray the session's tests share: a new local instance (never the cluster whose address
    ``ray start`` or ``ray.cluster_utils.Cluster`` left in ``/tmp/ray/ray_current_cluster``), 2 CPUs, no dashboard."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)


@pytest.fixture(scope="session")
def local_ray():
    """A real local Ray instance (2 CPUs), started once and shared by every test of the session that asks for it
    (``ray.init`` costs about 8 s). Tests that need their own cluster shape (several nodes, a killed driver) start
    it themselves, in a subprocess or with ``ray.cluster_utils.Cluster``."""
    import ray

    if not ray.is_initialized():
        start_session_ray()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The real ``sweeper demo``, run once as a user runs it (the console script in a fresh directory, MLflow's
    default store there, ``HOME`` there so Tune's default storage lands there too), its terminal output going to a
    file as it would to a terminal. While it runs, ``sweeper.status.sweep_status`` is asked every 3 s (as
    ``sweeper status demo`` would) once the sweep's state file exists. Returns the directory, the finished process,
    the terminal output and the trial states seen during the run; the tests that read the demo's store share it."""
    import subprocess
    import sys
    import time
    from pathlib import Path
    from types import SimpleNamespace

    from sweeper.status import sweep_status

    tmp = tmp_path_factory.mktemp("demo")
    drop = ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "RAY_AIR_NEW_OUTPUT", "SWEEPER_VERBOSE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["HOME"] = str(tmp)
    env.setdefault("RAY_raylet_start_wait_time_s", "300")  # a loaded CI machine starts Ray slowly
    exe = Path(sys.executable).with_name("sweeper")
    log = tmp / "terminal.log"  # a file, not a pipe: nobody reads a pipe while the sweep runs
    state = tmp / "ray_results" / "demo" / "sweeper.json"
    during: list[list[str]] = []
    with log.open("w") as fh:
        proc = subprocess.Popen([str(exe), "demo"], cwd=tmp, env=env, stdout=fh, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 900
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(3)
            if state.is_file() and proc.poll() is None:
                trials, _ = sweep_status("demo", storage=str(tmp / "ray_results"))
                during.append([t.state for t in trials])
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    return SimpleNamespace(
        dir=tmp,
        proc=proc,
        output=log.read_text(),
        during=during,
        env=env,
        exe=exe,
        uri=f"sqlite:///{tmp / 'mlflow.db'}",
    )


@pytest.fixture
def ray_starts(monkeypatch) -> list:
    """Every call of ``sweeper.tune.init_ray`` and ``ray.init`` during the test (recorded, then let through): a
    bad-input test asserts it stays empty. ``ray.is_initialized()`` cannot tell, as the session's Ray may be up."""
    import ray

    import sweeper.tune

    calls: list = []
    real_init_ray, real_ray_init = sweeper.tune.init_ray, ray.init

    def record(real):
        def wrapper(*args, **kwargs):
            calls.append((real.__name__, args, kwargs))
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(sweeper.tune, "init_ray", record(real_init_ray))
    monkeypatch.setattr(ray, "init", record(real_ray_init))
    return calls


@pytest.fixture
def tracking_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


#: ``tiny_config(tmp, **ONE_AT_A_TIME)`` for sweeps that only read their results: one trial at a time, so one reused
#: worker process imports torch, torchvision and mlflow once per sweep (~9 CPU-s a process; the suite is CPU-bound on
#: 2 cores). Trials side by side stay tested where they are the point (16 concurrent trials, reused workers side by
#: side, the tracking servers, train-once, the diverging trial, the demo).
ONE_AT_A_TIME = {"resources__max_concurrent_trials": 1}


def tiny_config(tmp_path, **changes):
    """A tiny digits sweep for integration tests: 3 eval classes, 24 training / 12 test images per class, 1 epoch,
    4 resamples of 8 points; Tune state under ``tmp_path``. ``changes`` are ``section__field=value`` (or a top-level
    ``key=value``), e.g. ``tiny_config(tmp, grid__model=["simclr"], name="other")``."""
    from sweeper.config import parse_config

    raw = {
        "name": "tiny",
        "experiment": "tiny-exp",
        "dataset": {"name": "digits", "classes": ["0", "1", "2"], "max_train_per_class": 24, "max_test_per_class": 12},
        "grid": {
            "model": ["simclr", "barlow_twins"],
            "train_class": ["1"],
            "augmentation": ["none", "non_rigid"],
            "seed": [0],
        },
        "train": {"epochs": 1, "batch_size": 16, "lr": 0.01},
        "score": {
            "n_resamples": 4,
            "sample_size": 8,
            "seed": 3,
            "metrics": ["hausdorff", "euclidean", "mtopdiv", "knn_auroc"],
            "knn_k": 3,
        },
        "resources": {"cpus_per_trial": 1, "bootstrap_workers": "auto"},
        "tune": {"storage_path": str(tmp_path / "ray_results"), "max_failures": 0},
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            raw.setdefault(section, {})[field] = value
        else:
            raw[section] = value
    return parse_config(raw)
