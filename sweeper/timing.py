"""Where a trial's wall time goes, as the trial itself sees it: ``timing.*`` metrics on its MLflow run.

A :class:`TrialTimer` takes wall-clock timestamps (``time.time()``, seconds since the epoch, so they compare with
MLflow's run start and end times and across processes) at the trial's phase boundaries and adds up the time spent in
repeated phases (checkpoint persistence, MLflow logging). ``benchmarks/trial_overhead.py`` reads them back.

Logged metrics (all seconds; ``*_at`` are epoch timestamps):

- ``timing.process_started_at``: the worker process's creation (``psutil``; absent without it);
  ``timing.imports_started_at``: when the process first imported the ``sweeper`` package;
  ``timing.imported_at``: when ``sweeper.trial`` (and with it torch, mlflow, ...) finished importing;
  ``timing.trial_started_at`` / ``timing.trial_ended_at``: entry into the trainable and the last timestamp before the
  run is closed; ``timing.first_in_process``: 1 when no trial ran in this process before (a fresh worker), else 0;
  ``timing.pid``: the worker's process id.
- ``timing.<phase>`` for the phases ``setup`` (MLflow run, params), ``data``, ``train`` (training without its
  checkpoints), ``checkpoint`` (state snapshots handed to Tune), ``embed``, ``score`` and ``log`` (every other
  MLflow write: per-epoch metrics, weights, embeddings, score tables).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import sweeper

#: When ``sweeper.trial`` finished importing in this process (set by that module).
IMPORTED_AT: float | None = None

_TRIALS_IN_PROCESS = 0


def imported() -> None:
    """Record that ``sweeper.trial`` finished importing (called at the end of its imports)."""
    global IMPORTED_AT
    IMPORTED_AT = time.time()


def process_started_at() -> float | None:
    """Creation time of this process (epoch seconds), or ``None`` when ``psutil`` is not installed."""
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process(os.getpid()).create_time()


class TrialTimer:
    """Phase timestamps and accumulated phase durations of one trial (see the module docstring)."""

    def __init__(self) -> None:
        global _TRIALS_IN_PROCESS
        self.started_at = time.time()
        self.first_in_process = _TRIALS_IN_PROCESS == 0
        _TRIALS_IN_PROCESS += 1
        self.seconds: dict[str, float] = {}
        self._mark = self.started_at

    def lap(self, phase: str) -> None:
        """Add the time since the previous lap (or the start, or the end of the last :meth:`phase` block) to
        ``phase``."""
        now = time.time()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._mark
        self._mark = now

    @contextmanager
    def phase(self, phase: str) -> Iterator[None]:
        """Time a block nested inside a lapped phase: its duration goes to ``phase`` and is taken out of the
        enclosing lap (the next :meth:`lap` counts only the rest)."""
        t0 = time.time()
        try:
            yield
        finally:
            dt = time.time() - t0
            self.seconds[phase] = self.seconds.get(phase, 0.0) + dt
            self._mark += dt

    def metrics(self) -> dict[str, float]:
        """The ``timing.*`` metrics so far (``trial_ended_at`` is now)."""
        out = {f"timing.{k}": v for k, v in self.seconds.items()}
        out["timing.trial_started_at"] = self.started_at
        out["timing.trial_ended_at"] = time.time()
        out["timing.first_in_process"] = float(self.first_in_process)
        out["timing.pid"] = float(os.getpid())
        out["timing.imports_started_at"] = sweeper.IMPORTS_STARTED_AT
        if IMPORTED_AT is not None:
            out["timing.imported_at"] = IMPORTED_AT
        started = process_started_at()
        if started is not None:
            out["timing.process_started_at"] = started
        return out
