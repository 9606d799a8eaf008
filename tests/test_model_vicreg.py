"""VICReg: its loss decreases on digits; the loss is lightly's VICReg loss of the two projections."""

from __future__ import annotations

import torch
from ssl_support import MEAN, STD, epoch_losses

from experiments.models import MODELS, SSLModel, build_model

SMALL = {"hidden_dim": 256, "output_dim": 256}


def test_vicreg_loss_decreases_on_digits() -> None:
    losses = [r.loss for r in epoch_losses("vicreg", settings={"lr": MODELS["vicreg"].train_defaults["lr"]}, **SMALL)]
    assert losses[-1] < losses[0] - 0.5, losses


def test_vicreg_loss_is_invariance_variance_covariance() -> None:
    """The three terms by hand (Bardes et al., eq. 1-6 and their reference code): 25 · MSE + 25 · the mean hinge of
    the per-dimension std at 1 (averaged over the views) + 1 · the squared off-diagonal covariances / d (summed over
    the views)."""
    torch.manual_seed(0)
    model = build_model("vicreg", MEAN, STD, **SMALL)
    z0, z1 = torch.randn(16, 256, dtype=torch.float64), torch.randn(16, 256, dtype=torch.float64)

    def var(z: torch.Tensor) -> torch.Tensor:
        return torch.relu(1 - torch.sqrt(z.var(dim=0) + 1e-4)).mean()

    def cov(z: torch.Tensor) -> torch.Tensor:
        c = torch.cov(z.T)
        return (c.pow(2).sum() - c.diagonal().pow(2).sum()) / z.shape[1]

    want = 25 * torch.nn.functional.mse_loss(z0, z1) + 25 * (var(z0) + var(z1)) / 2 + (cov(z0) + cov(z1))
    assert torch.allclose(model.criterion(z0, z1), want, rtol=1e-9)
    assert isinstance(model, SSLModel) and MODELS["vicreg"].family.name == "ssl"
