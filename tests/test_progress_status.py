"""What a user sees: readable trial names, Tune's table columns, quiet logs, ``sweeper status`` (unit tests on a real
sqlite MLflow store, and one tiny sweep through the console script)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from sweeper import progress, tracking
from sweeper.status import TrialStatus, eta_seconds, format_status, sweep_status

REPO = Path(__file__).resolve().parents[1]


def test_trial_label_is_readable_and_folder_safe():
    spec = {"model": "simclr", "train_class": "0", "augmentation": "none", "seed": 0, "params": []}
    assert progress.trial_label(spec) == "simclr-0-none-s0"
    spec = {"model": "odm", "train_class": "0+1", "augmentation": "gaussian_noise", "seed": 2, "params": [["m", 1]]}
    assert progress.trial_label(spec) == "odm-0+1-gaussian_noise-m=1-s2"
    assert progress.trial_label({**spec, "train_class": "a/b c"}).startswith("odm-a_b_c-")


def test_reporter_columns_show_the_grid_and_params_only_when_set():
    plain = progress.reporter([{"model": "simclr", "params": []}])
    assert list(plain._parameter_columns.values()) == ["model", "train_class", "augmentation", "seed"]
    assert list(plain._metric_columns.values()) == ["epoch", "loss", "time (s)"]
    with_params = progress.reporter([{"model": "odm", "params": [["mining", True]]}])
    assert "params" in with_params._parameter_columns.values()


def _store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.check_tracking(uri)
    return uri, MlflowClient(uri)


def test_status_lines_totals_and_eta_from_a_real_store(tmp_path, monkeypatch):
    """A sweep of 4 trials written by hand into MLflow: one finished in 100 s, one failed, one running at epoch 1 of
    4, one with no run; the ETA is 100 s x (1 pending + 3/4 of the running one) / 1 running = 175 s."""
    from tests.conftest import tiny_config

    cfg = tiny_config(tmp_path, train__epochs=4, tune__storage_path=str(tmp_path / "rr"))
    uri, client = _store(tmp_path)
    exp = tracking.get_or_create_experiment(client, cfg.experiment, uri)
    parent = tracking.start_sweep_run(client, exp, cfg.name, yaml.safe_dump(cfg.model_dump(mode="json")), 4, {})
    keys = [t.key for t in cfg.trials()]
    assert len(keys) == 4
    done = tracking.trial_run(client, exp, parent, keys[0], "a", {})
    client.set_terminated(done, "FINISHED", end_time=client.get_run(done).info.start_time + 100_000)
    failed = tracking.trial_run(client, exp, parent, keys[1], "b", {})
    tracking.finish_run(client, failed, ok=False, error="ValueError: boom\n  at line 3")
    running = tracking.trial_run(client, exp, parent, keys[2], "c", {})
    tracking.log_metrics(client, running, {"loss": 1.5}, step=1)
    # found through --experiment (the config logged to the parent run), no Tune folder at all
    trials, parent_status = sweep_status(cfg.name, experiment=cfg.experiment, tracking_uri=uri)
    assert [t.state for t in trials] == ["finished", "failed", "running", "pending"]
    assert trials[0].seconds == pytest.approx(100.0)
    assert trials[1].error == "ValueError: boom"
    assert (trials[2].epoch, trials[2].epochs) == (1, 4)
    assert eta_seconds(trials) == pytest.approx(100.0 * (1 + 3 / 4) / 1)
    text = format_status(cfg.name, trials, parent_status)
    lines = text.splitlines()
    assert lines[0].startswith(keys[0]) and "finished" in lines[0] and "(100 s)" in lines[0]
    assert "failed: ValueError: boom" in lines[1]
    assert "running at epoch 1 of 4" in lines[2]
    assert lines[3] == f"{keys[3]}  pending"
    assert "4 trials: 1 finished, 1 running, 1 failed, 1 pending" in lines[4]
    assert lines[5] == "ETA: ~2.9 min (mean of 1 finished trial(s))"


def test_status_of_an_unknown_sweep_is_bad_input(tmp_path, capsys, ray_starts):
    from sweeper.cli import main

    assert main(["status", "nope", "--storage-path", str(tmp_path)]) == 2
    assert "no sweep named 'nope'" in capsys.readouterr().err
    assert ray_starts == []


def test_rays_token_notice_is_silenced_by_default_and_shown_with_v():
    """Ray's own warning function, called after ``configure``: its record is dropped at verbosity 0 and emitted with
    ``-v``. Recorded by a handler of our own: Ray's handler may be bound to a stream of an earlier test in a session
    whose Ray is up."""
    import logging

    from ray._private.authentication import authentication_token_setup as auth

    logger = logging.getLogger(auth.__name__)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    before = logger.level
    logger.addHandler(handler)
    try:
        progress.configure(0)
        auth._warn_token_auth_enabled()
        assert not [r for r in records if "Token authentication" in r.getMessage()]
        logger.setLevel(logging.NOTSET)  # what a fresh process with -v has: no quiet level set
        progress.configure(1)
        auth._warn_token_auth_enabled()
        assert [r for r in records if "Token authentication is enabled" in r.getMessage()]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)
        os.environ.pop(progress.VERBOSE_ENV, None)


def test_eta_is_unknown_before_a_trial_finished():
    assert eta_seconds([TrialStatus("k", "running", 1, 3, 5.0), TrialStatus("j", "pending")]) is None


# The console script's terminal (model column, no checkpoint noise, `sweeper status` during and after the run) is
# checked on the real demo: tests/test_demo.py::test_demo_terminal_shows_a_model_column_no_checkpoint_noise_and_a_status


_EXITING_WORKER = """
import atexit, signal, sys, time

def ray_worker_handler(signum, frame):  # what Ray's worker main loop installs
    raise SystemExit(1)

signal.signal(signal.SIGTERM, ray_worker_handler)
if sys.argv[1] == "hook":
    from sweeper.progress import ignore_sigterm_at_exit

    ignore_sigterm_at_exit()

def slow_exit():  # an exit callback registered later, as MLflow's and torch's are
    print("exiting", flush=True)
    time.sleep(3)

atexit.register(slow_exit)
"""


@pytest.mark.parametrize("hook", [False, True])
def test_a_worker_sigtermed_while_exiting_prints_no_traceback(hook):
    """A SIGTERM that reaches a Ray-style worker while its exit callbacks run printed ``Exception ignored in ...
    SystemExit: 1`` (issue 31: the end of ``sweeper demo``'s output); with the workers' setup hook it is ignored and
    the process exits 0. Without the hook the same script shows the traceback, so the check can fail."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", _EXITING_WORKER, "hook" if hook else "plain"],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "exiting"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    if hook:
        assert proc.returncode == 0 and "Exception ignored" not in err, err
    else:
        assert "Exception ignored" in err and "SystemExit: 1" in err, err
