"""GPU readiness, checked on a CPU (issue 22): autocast-safe SSL losses, CPU checkpoints that resume without
reseeding, every ``torch.load`` with ``map_location``, deterministic mode, the resolved precision in the training key.
CUDA-only tests skip, saying why, on a machine without a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from experiments.models import MODEL_FAMILIES, build_model

ROOT = Path(__file__).resolve().parents[1]
SIZE = 16
NO_CUDA = "needs a CUDA GPU (torch.cuda.is_available() is False on this machine)"
SSL_MODELS = [name for name, family in MODEL_FAMILIES.items() if family == "ssl"]


# ----------------------------------------------------------------------------------------------- autocast (4)


@pytest.mark.parametrize("name", SSL_MODELS)
def test_ssl_loss_under_bf16_autocast_runs_the_criterion_in_fp32(name: str) -> None:
    """Contract: under CPU bf16 autocast, ``loss(x0, x1)`` equals the criterion applied outside autocast to the fp32
    casts of the projections computed under the same autocast (1e-3 relative)."""
    torch.manual_seed(0)
    model = build_model(name, (0.5,) * 3, (0.25,) * 3, image_size=SIZE).eval()
    x0, x1 = torch.rand(32, 3, SIZE, SIZE), torch.rand(32, 3, SIZE, SIZE)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model.loss(x0, x1)
            z0, z1 = model(x0), model(x1)
        want = model.criterion(z0.float(), z1.float())
    assert z0.dtype == torch.bfloat16  # the projections really ran under autocast
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(float(want), rel=1e-3)
