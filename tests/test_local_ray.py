"""With no address and no ``RAY_ADDRESS``, a sweep starts a Ray of its own: it never attaches to a cluster that
``ray start`` (or ``ray.cluster_utils.Cluster``) left its address for on this machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from cluster_support import free_port


@pytest.fixture
def ray_tmpdir():
    """A short folder for ``RAY_TMPDIR`` (Ray's unix sockets live below it, and their paths have a length limit)."""
    path = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_init_ray_starts_its_own_ray_where_ray_start_left_an_address(ray_tmpdir):
    """A bare ``ray.init()`` attaches to the address in ``<RAY_TMPDIR>/ray/ray_current_cluster``, alive or not. In CI
    the fault-injection test's ``sweeper run`` attached so to another test's two-node cluster and hung when that
    cluster went down. Here the file names an address nothing listens on: ``init_ray()`` must start its own Ray."""
    stale = f"127.0.0.1:{free_port()}"
    (ray_tmpdir / "ray").mkdir()
    (ray_tmpdir / "ray" / "ray_current_cluster").write_text(stale)
    code = (
        "import ray; from sweeper.tune import init_ray; init_ray(); "
        "print('gcs', ray.get_runtime_context().gcs_address); ray.shutdown()"
    )
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmpdir)}
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    gcs = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("gcs ")]
    assert gcs and gcs[0] != stale, out.stdout
