"""BYOL: its loss decreases on digits; its target network moves by the momentum rule after every optimizer step."""

from __future__ import annotations

import torch
from ssl_support import MEAN, STD, check_momentum_rule, cosine_momentum, epoch_losses, momentum_updates

from experiments.models import MODELS, SSLModel, build_model

SMALL = {"hidden_dim": 128, "output_dim": 64}


def test_byol_loss_decreases_on_digits() -> None:
    losses = [r.loss for r in epoch_losses("byol", settings={"lr": 0.05}, **SMALL)]
    assert losses[-1] < losses[0] - 0.1, losses


def test_byol_target_moves_by_the_cosine_momentum_rule() -> None:
    model, calls = momentum_updates("byol", **SMALL)
    check_momentum_rule(calls, cosine_momentum(0.996))
    assert not any(p.requires_grad for p in model.backbone_momentum.parameters())


def test_byol_is_an_ssl_model_of_the_registry() -> None:
    assert MODELS["byol"].family.name == "ssl" and MODELS["byol"].train_defaults["epochs"] == 200
    model = build_model("byol", MEAN, STD, **SMALL)
    assert isinstance(model, SSLModel) and model.embed(torch.rand(3, 3, 16, 16), "projection").shape == (3, 64)
