"""SimSiam: its loss decreases on digits; the loss stops the gradient at the projections."""

from __future__ import annotations

import torch
from ssl_support import MEAN, STD, epoch_losses

from experiments.models import MODELS, build_model


def test_simsiam_loss_decreases_on_digits() -> None:
    losses = [r.loss for r in epoch_losses("simsiam", settings={"lr": 0.1})]
    assert losses[-1] < losses[0] - 0.05, losses


def test_simsiam_loss_is_symmetric_negative_cosine_with_stop_gradient() -> None:
    torch.manual_seed(0)
    model = build_model("simsiam", MEAN, STD).train()
    x0, x1 = torch.rand(6, 3, 16, 16), torch.rand(6, 3, 16, 16)
    torch.manual_seed(1)
    loss = model.loss(x0, x1)
    torch.manual_seed(1)
    z0, z1 = model(x0), model(x1)
    p0, p1 = model.prediction_head(z0), model.prediction_head(z1)
    cos = torch.nn.functional.cosine_similarity
    want = -0.5 * (cos(p0, z1.detach()).mean() + cos(p1, z0.detach()).mean())
    assert torch.allclose(loss, want, atol=1e-6)
    assert MODELS["simsiam"].family.name == "ssl"
