"""Shared checks of the two-view SSL methods (``tests/test_model_*.py``): train a registry model for a few epochs on
tiny digit images with :func:`experiments.train.train`, and record every momentum update the loop triggers."""

from __future__ import annotations

import math
from typing import Any

import torch

from experiments.augment import ssl_view_transform
from experiments.data import load_digits
from experiments.models import build_model
from experiments.train import EpochResult, TrainSettings, train

SIZE = 16
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def digit_images(per_class: int = 8) -> torch.Tensor:
    """``per_class`` training digits of each of the 10 classes, 16 x 16."""
    return load_digits(image_size=SIZE).subset(max_train_per_class=per_class, max_test_per_class=1).train_images


def epoch_losses(
    name: str, *, epochs: int = 6, batch_size: int = 20, seed: int = 0, settings: dict[str, Any], **options: Any
) -> list[EpochResult]:
    """Train registry model ``name`` (built with ``options``) for ``epochs`` on :func:`digit_images`."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    model = build_model(name, MEAN, STD, image_size=SIZE, **options)
    s = TrainSettings(epochs=epochs, batch_size=batch_size, **{"momentum": 0.9, "weight_decay": 5e-4, **settings})
    return train(model, digit_images(), s, ssl_view_transform(SIZE), seed=seed)


def momentum_updates(name: str, *, epochs: int = 2, batch_size: int = 20, **options: Any) -> tuple[Any, list]:
    """Train ``name`` and record each ``on_after_step(step, total_steps)`` call the loop makes: ``(step, total,
    targets before, online after the optimizer step, targets after)`` as flat parameter lists."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(name, MEAN, STD, image_size=SIZE, **options)
    hook, calls = model.on_after_step, []

    def targets() -> list[torch.Tensor]:
        return [
            p.detach().clone()
            for p in [*model.backbone_momentum.parameters(), *model.projection_head_momentum.parameters()]
        ]

    def online() -> list[torch.Tensor]:
        return [p.detach().clone() for p in [*model.backbone.parameters(), *model.projection_head.parameters()]]

    def spy(step: int, total: int) -> None:
        before, source = targets(), online()
        hook(step, total)
        calls.append((step, total, before, source, targets()))

    model.on_after_step = spy  # the loop looks the hook up on the model
    s = TrainSettings(epochs=epochs, batch_size=batch_size, lr=0.05, momentum=0.9)
    train(model, digit_images(), s, ssl_view_transform(SIZE), seed=0)
    return model, calls


def check_momentum_rule(calls: list, momentum: Any) -> None:
    """Every call moved every target parameter by ``t ← m t + (1 - m) s`` with ``m = momentum(step, total)``, the
    steps ran 0 … total-1 once each, and the targets are not the online network."""
    total = calls[0][1]
    assert [c[0] for c in calls] == list(range(total)) and total == len(calls) > 1
    for step, total, before, source, after in calls:
        m = momentum(step, total)
        for t0, s, t1 in zip(before, source, after, strict=True):
            torch.testing.assert_close(t1, m * t0 + (1 - m) * s, rtol=0, atol=1e-6)
    last = calls[-1]
    assert any(not torch.equal(t, s) for t, s in zip(last[4], last[3], strict=True))


def cosine_momentum(start: float, end: float = 1.0):
    """The hand-written cosine schedule: ``end - (end - start) (cos(π step / (total - 1)) + 1) / 2``, ``end`` at the
    last step."""
    return lambda step, total: (
        end if step >= total - 1 else end - (end - start) * (math.cos(math.pi * step / (total - 1)) + 1) / 2
    )
