"""The trial decides the metrics' device (issue 22, finding 1): with CUDA made to look available, no bootstrap
computation takes a CUDA path (torch on a GPU, ripser++) unless the trial passes a GPU device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments.metrics import ripserpp
from sweeper.bootstrap import draw_indices, score_block
from sweeper.metric_device import plan_metrics

ROOT = Path(__file__).resolve().parents[1]
METRICS = ["hausdorff", "euclidean", "chamfer", "mtopdiv", "mmd"]
TRAPS = '''
def install_traps():
    """CUDA looks available; touching it, or calling ripser++, raises."""
    import sys, types, torch
    from experiments.metrics import ripserpp

    def trap(*args, **kwargs):
        raise AssertionError("CUDA path taken")

    torch.cuda.is_available = lambda: True
    torch.cuda._lazy_init = trap  # every CUDA tensor op goes through it
    fake = types.ModuleType("ripserplusplus")
    fake.run = trap
    sys.modules["ripserplusplus"] = fake
    ripserpp.unavailable_reason = lambda: None  # and ripser++ looks usable
'''


@pytest.fixture
def cuda_traps(monkeypatch):
    namespace: dict = {}
    exec(TRAPS, namespace)
    with monkeypatch.context() as m:
        m.setattr(torch.cuda, "is_available", torch.cuda.is_available)  # restored on exit
        m.setattr(torch.cuda, "_lazy_init", torch.cuda._lazy_init)
        m.setattr(ripserpp, "unavailable_reason", ripserpp.unavailable_reason)
        m.setitem(sys.modules, "ripserplusplus", None)
        namespace["install_traps"]()
        yield


def _problem():
    rng = np.random.default_rng(0)
    reference, cloud = rng.normal(size=(300, 4)), rng.normal(size=(250, 4))
    ref_idx, eval_idx = draw_indices(300, 250, 30, 200, seed=1, class_position=0)  # 30 * 200 * 200 > 2**20 entries
    return reference, cloud, ref_idx, eval_idx


def test_the_plan_makes_device_and_backend_explicit(caplog) -> None:
    cpu = plan_metrics(METRICS, "cpu", {"mtopdiv": {"backend": "auto"}})
    assert cpu.on_device == () and cpu.in_tasks == tuple(METRICS)
    assert all(cpu.options[m] == {"device": "cpu"} for m in ("hausdorff", "euclidean", "chamfer"))
    assert cpu.options["mtopdiv"] == {"backend": "giotto"} and cpu.options["mmd"] == {}
    assert (
        plan_metrics(["mtopdiv"], "cpu", {"mtopdiv": {"backend": "ripser"}}).options["mtopdiv"]["backend"] == "ripser"
    )
    with pytest.raises(ValueError, match="ripserplusplus needs a GPU"):
        plan_metrics(["mtopdiv"], "cpu", {"mtopdiv": {"backend": "ripserplusplus"}})
    with caplog.at_level("INFO"):
        gpu = plan_metrics(METRICS, "cuda")  # no usable CUDA / ripser++ here: MTopDiv stays on the CPU, and says why
    assert gpu.on_device == ("hausdorff", "euclidean", "chamfer") and gpu.options["hausdorff"]["device"] == "cuda"
    assert gpu.options["mtopdiv"]["backend"] == "giotto" and gpu.in_tasks == ("mtopdiv", "mmd")
    assert "using giotto-ph" in caplog.text or "not ripser++" in caplog.text


def test_with_cuda_visible_no_cuda_path_unless_the_trial_passes_a_gpu(cuda_traps) -> None:
    reference, cloud, ref_idx, eval_idx = _problem()
    # left alone (no device, no backend), the metrics no longer pick CUDA because it looks available
    assert np.isfinite(score_block(reference, cloud, ref_idx, eval_idx, ["hausdorff"], {})).all()
    assert np.isfinite(score_block(reference, cloud, ref_idx[:2, :20], eval_idx[:2, :20], ["mtopdiv"], {})).all()
    plan = plan_metrics(METRICS, "cpu", {"mtopdiv": {"backend": "auto"}})
    got = score_block(reference, cloud, ref_idx, eval_idx, list(plan.in_tasks), plan.options)
    assert got.shape == (len(METRICS), 30) and np.isfinite(got).all()
    with pytest.raises((AssertionError, RuntimeError), match="CUDA path taken"):  # a GPU device passed: CUDA is used
        gpu = plan_metrics(["hausdorff", "mtopdiv"], "cuda", {"mtopdiv": {"backend": "auto"}})
        assert gpu.on_device == ("hausdorff", "mtopdiv")
        score_block(reference, cloud, ref_idx, eval_idx, list(gpu.on_device), gpu.options)


SCRIPT = (
    TRAPS
    + """
import json, sys
import numpy as np
import ray
from sweeper.bootstrap import bootstrap_scores, _score_block_task

ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False,
         runtime_env={"worker_process_setup_hook": install_traps})
rng = np.random.default_rng(0)
reference = rng.normal(size=(300, 4))
clouds = {"a": rng.normal(size=(250, 4)), "b": rng.normal(size=(260, 4)) + 0.5}
metrics = ["hausdorff", "euclidean", "chamfer", "mtopdiv", "mmd"]
try:  # a task left to choose by itself stays on the CPU in these workers too
    store = ray.put({"__reference__": reference, "a": clouds["a"]})
    idx = rng.integers(0, 250, size=(30, 200))
    ray.get(_score_block_task.remote(store, "a", idx, idx, ["hausdorff"], {}))
    control = "no error"
except Exception as exc:
    control = str(exc)
summary, raw = bootstrap_scores(reference, clouds, metrics, n_resamples=30, sample_size=200, seed=1, device="cpu",
                                metric_options={"mtopdiv": {"backend": "auto"}})
print(json.dumps({"control": control, "raw": raw.value.tolist()}))
"""
)


@pytest.mark.slow
def test_bootstrap_tasks_seeing_cuda_stay_on_the_cpu(tmp_path) -> None:
    """Real Ray workers in which CUDA looks available (a worker setup hook) score every metric on the CPU, with the
    same values as a plain CPU computation here."""
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["control"] == "no error"
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(300, 4))
    clouds = {"a": rng.normal(size=(250, 4)), "b": rng.normal(size=(260, 4)) + 0.5}
    plan = plan_metrics(METRICS, "cpu", {"mtopdiv": {"backend": "auto"}})
    want = []
    for pos, (_, cloud) in enumerate(clouds.items()):
        ref_idx, eval_idx = draw_indices(300, len(cloud), 30, 200, seed=1, class_position=pos)
        want.append(score_block(reference, cloud, ref_idx, eval_idx, METRICS, plan.options))
    np.testing.assert_allclose(np.array(out["raw"]), np.concatenate([w.ravel() for w in want]), rtol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_gpu_metrics_equal_the_cpu_ones() -> None:
    reference, cloud, ref_idx, eval_idx = _problem()
    cpu, gpu = plan_metrics(METRICS, "cpu"), plan_metrics(METRICS, "cuda")
    np.testing.assert_allclose(
        score_block(reference, cloud, ref_idx, eval_idx, list(gpu.on_device), gpu.options),
        score_block(reference, cloud, ref_idx, eval_idx, list(gpu.on_device), cpu.options),
        rtol=1e-4,
    )


_ = types  # the trap module type is built inside TRAPS
