"""``benchmarks/gpu_check.py --ci`` runs its CPU half (or everything, on a CUDA machine) and prints its table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_ci_prints_its_table_and_names_what_it_skipped(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_raylet_start_wait_time_s": "300"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--ci", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    assert "| check | result | ok |" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and line.endswith(("| yes |", "| NO |"))]
    assert len(rows) >= 5 and all(r.endswith("| yes |") for r in rows)
    assert any(r.startswith("| demo sweep on the") and "2/2 trials FINISHED" in r for r in rows)
    assert any("proj18-style (per-image PIL, 2 workers, fp32)" in r and "(1.00× proj18-style)" in r for r in rows)
    assert any(r.startswith("| Hausdorff on the") for r in rows) and any(r.startswith("| MTopDiv") for r in rows)
    import torch

    if not torch.cuda.is_available():
        assert "Skipped: the demo sweep on a GPU" in text and "ripser++ MTopDiv" in text and "GPU Hausdorff" in text
    section = out.read_text()
    assert "## GPU check (CI-sized)" in section and "| check | result | ok |" in section
