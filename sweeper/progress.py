"""What a user sees while a sweep runs: Tune's trial table, readable trial names, and quiet logs.

- The table shows each trial's ``model``, ``train_class``, ``augmentation`` and ``seed`` (``params`` only when the
  grid has params), then ``epoch``, ``loss`` and the time, through Tune's ``CLIReporter`` (``parameter_columns`` /
  ``metric_columns``). Tune's newer output engine ignores a reporter, so the classic one is selected
  (``RAY_AIR_NEW_OUTPUT=0``) unless the user set that variable.
- Trials are named ``simclr-0-none-s0`` (``trial_name_creator``); their folders add Tune's trial id
  (``simclr-0-none-s0_f9383_00000``) so a rerun of a sweep never writes into an earlier run's folder.
- At the default verbosity, three kinds of noise never reach the terminal: Ray Train's per-epoch ``Checkpoint
  successfully created at: ...`` (from every trial worker), MLflow's ``Downloading artifacts`` progress bars inside
  trials, and Ray's token-authentication notice on a local start. ``sweeper -v`` brings them back.
- A trial worker that is already exiting ignores SIGTERM (:func:`ignore_sigterm_at_exit`). Ray's worker handler
  raises ``SystemExit(1)`` on SIGTERM; when the driver's ``ray.shutdown()`` sent it while the worker was still running
  its exit callbacks (MLflow's, torch's), Python printed ``Exception ignored in ... sigterm_handler ... SystemExit: 1``
  at the end of a successful sweep's output. The process was exiting anyway.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
from typing import Any

#: Loggers silenced at the default verbosity, and the level they get: Ray Train's checkpoint notices (old and v2
#: storage modules) and Ray's token-authentication notices.
QUIET_LOGGERS = {
    "ray.train._internal.storage": logging.WARNING,
    "ray.train.v2._internal.execution.storage": logging.WARNING,
    "ray._private.authentication.authentication_token_setup": logging.ERROR,
}
#: Environment of the driver and of every Ray worker at the default verbosity.
QUIET_ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
VERBOSE_ENV = "SWEEPER_VERBOSE"


def verbose() -> bool:
    """Whether ``sweeper -v`` asked for the full logs (``SWEEPER_VERBOSE=1``)."""
    return os.environ.get(VERBOSE_ENV, "0") not in ("", "0")


def configure(verbosity: int) -> None:
    """Set up the driver's output for a sweep before Ray starts: at ``verbosity`` 0 the noise above is silenced,
    at 1 or more everything is shown. Also selects Tune's classic output engine, which honours the reporter."""
    os.environ[VERBOSE_ENV] = str(int(verbosity))
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if verbosity > 0:
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    quiet_worker_logs()


def quiet_worker_logs() -> None:
    """Ray's ``worker_process_setup_hook`` at the default verbosity: raise the level of :data:`QUIET_LOGGERS` in
    this process, and :func:`ignore_sigterm_at_exit`."""
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    ignore_sigterm_at_exit()


def ignore_sigterm_at_exit() -> None:
    """From the moment this process starts to exit, SIGTERM is ignored (see the module docstring).

    The switch is registered with ``threading._register_atexit``: those callbacks run first in interpreter shutdown,
    before the thread joins and every ``atexit`` callback (MLflow, torch and Ray register theirs later, and ``atexit``
    runs the last registered first). Where that private hook is missing, a plain ``atexit`` callback is the fallback.
    Ray kills a worker that does not exit in time with SIGKILL, so ignoring SIGTERM cannot leave one behind."""

    def ignore() -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

    register = getattr(threading, "_register_atexit", None)
    try:
        (register or atexit.register)(ignore)
    except RuntimeError:  # already shutting down
        ignore()


def worker_runtime_env() -> dict[str, Any] | None:
    """The Ray job ``runtime_env`` that silences the trial workers too (with ``-v``: only their exit, see
    :func:`ignore_sigterm_at_exit`)."""
    if verbose():
        return {"worker_process_setup_hook": "sweeper.progress.ignore_sigterm_at_exit"}
    return {"worker_process_setup_hook": "sweeper.progress.quiet_worker_logs", "env_vars": dict(QUIET_ENV)}


def trial_label(spec: dict[str, Any]) -> str:
    """``simclr-0-none-s0`` for a trial's ``TrialSpec.to_dict()``; grid params follow the augmentation
    (``odm-0-none-mining=True-s0``). Characters that do not belong in a folder name become ``_``."""
    params = "".join(f"-{k}={v}" for k, v in spec.get("params", ()))
    label = f"{spec['model']}-{spec['train_class']}-{spec['augmentation']}{params}-s{spec['seed']}"
    return "".join(c if c.isalnum() or c in "-_.=+," else "_" for c in label)


def trial_name(trial: Any) -> str:
    """Tune's ``trial_name_creator``: :func:`trial_label` of the trial's spec."""
    return trial_label(trial.config["trial"])


def trial_dirname(trial: Any) -> str:
    """Tune's ``trial_dirname_creator``: the readable name plus Tune's trial id (unique across reruns)."""
    return f"{trial_label(trial.config['trial'])}_{trial.trial_id}"


def reporter(trials: list[dict[str, Any]]) -> Any:
    """Tune's ``CLIReporter`` with the trial's grid coordinates and its epoch, loss and time as columns."""
    from ray import tune

    params = {f"trial/{k}": k for k in ("model", "train_class", "augmentation", "seed")}
    if any(t.get("params") for t in trials):
        params["trial/params"] = "params"
    metrics = {"epoch": "epoch", "loss": "loss", "time_total_s": "time (s)"}
    return tune.CLIReporter(parameter_columns=params, metric_columns=metrics, max_report_frequency=30)


def experiment_description(cfg: Any) -> str:
    """The MLflow experiment's description (markdown, shown above its runs table): what the sweep is."""
    g = cfg.grid
    return (
        f"Embedding sweep `{cfg.name}` (embedding-sweeper): models {', '.join(g.model)} trained on "
        f"{cfg.dataset.name} classes {', '.join(cfg.train_classes())}, augmentations {', '.join(g.augmentation)}, "
        f"seeds {', '.join(map(str, g.seed))}; each trial's embedding clouds compared with "
        f"{', '.join(cfg.score.metric_names)} over {cfg.score.n_resamples} bootstrap resamples of "
        f"{cfg.score.sample_size} points. One parent run per sweep, one nested child run per trial "
        "(tag `sweeper.trial_key`); score tables under each trial's `scores/` artifacts."
    )


#: MLflow 3.17's own switch between its GenAI and its model-training views, as a URL parameter (the UI's toggle also
#: remembers it in the browser). With the switch on, the UI ignores the experiment tag; earlier MLflow 3 releases
#: read the tag (``tracking.EXPERIMENT_KIND``), which the sweeper sets as well.
UI_RUNS_VIEW = "workflowType=machine_learning"


def ui_path(experiment_id: str) -> str:
    """The MLflow UI route that opens an experiment on its training-runs table (append it to the UI's address)."""
    return f"#/experiments/{experiment_id}?{UI_RUNS_VIEW}"
