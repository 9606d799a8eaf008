"""MoCo v2: its loss decreases on digits once the memory bank holds real keys; its momentum encoder moves by the
momentum rule after every optimizer step; the memory bank travels with the weights."""

from __future__ import annotations

import torch
from ssl_support import MEAN, SIZE, STD, check_momentum_rule, digit_images, epoch_losses, momentum_updates

from experiments.augment import ssl_view_transform
from experiments.models import MODELS, build_model
from experiments.train import TrainSettings, TrainState, train

SMALL = {"hidden_dim": 128, "output_dim": 64, "memory_bank_size": 20}  # the bank: the previous batch's keys


def test_moco_v2_loss_decreases_on_digits() -> None:
    # epoch 1 starts from a random bank (easy negatives); from epoch 2 on the bank holds real keys
    losses = [r.loss for r in epoch_losses("moco_v2", epochs=7, settings={"lr": 0.05}, **SMALL)]
    assert losses[-1] < losses[1] - 0.02, losses


def test_moco_v2_key_encoder_moves_by_the_momentum_rule() -> None:
    model, calls = momentum_updates("moco_v2", **SMALL)
    check_momentum_rule(calls, lambda step, total: 0.99)
    assert "criterion.memory_bank.bank" in model.state_dict()


def test_moco_v2_registry_entry() -> None:
    spec = MODELS["moco_v2"]
    assert spec.family.name == "ssl" and spec.train_defaults["optimizer"] == "sgd"
    model = build_model("moco_v2", MEAN, STD, **SMALL)
    assert model.criterion.temperature == 0.1 and model.momentum_start == model.momentum_end == 0.99


def test_moco_v2_resume_is_exact_with_the_memory_bank() -> None:
    """Two epochs straight equal one epoch, a checkpoint, a fresh model (other init) and the second epoch: the
    momentum encoder and the memory bank are part of the saved state."""
    images, s = digit_images(per_class=3), TrainSettings(epochs=2, batch_size=10, lr=0.05)

    def fresh(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return build_model("moco_v2", MEAN, STD, image_size=SIZE, **SMALL)

    straight, saved = fresh(0), []
    train(straight, images, s, ssl_view_transform(SIZE), seed=3, on_epoch=lambda r, snap: saved.append(snap()))
    resumed = fresh(99)
    state = TrainState.from_dict(saved[0].to_dict())
    train(resumed, images, s, ssl_view_transform(SIZE), seed=3, state=state)
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
