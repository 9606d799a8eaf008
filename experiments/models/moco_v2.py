"""MoCo v2 (Chen, Fan, Girshick and He, "Improved Baselines with Momentum Contrastive Learning", 2020,
https://arxiv.org/abs/2003.04297) with lightly's projection head, memory-bank NT-Xent loss and momentum utilities.

As lightly's CIFAR-10 benchmark (``benchmarks/cifar10_benchmark.py``, ``MocoModel``): the MLP head
``MoCoProjectionHead(d, 512, 128)``, ``NTXentLoss(temperature=0.1, memory_bank_size=(4096, 128))`` (the keys of
earlier batches are the negatives), a momentum encoder updated with ``m = 0.99`` and the symmetric loss
``½ (L(q0, k1) + L(q1, k0))``. The benchmark's batch shuffle (shuffling BN across GPUs) is left out: on one device a
permutation does not change batch-norm statistics. Training defaults (the registry's): SGD, lr 0.06 (``6e-2`` per
128 images), momentum 0.9, weight decay 5e-4, cosine schedule, 200 epochs.
"""

from __future__ import annotations

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import MoCoProjectionHead
from torch import nn

from experiments.models.momentum import MomentumSSLModel

TRAIN_DEFAULTS = {
    "epochs": 200,
    "optimizer": "sgd",
    "lr": 0.06,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "schedule": "cosine",
}


class MoCoV2(MomentumSSLModel):
    """MoCo v2 on a given backbone: queries from the online network, keys from its momentum copy; the memory bank
    (``criterion.memory_bank``, a buffer saved with the weights) holds the last ``memory_bank_size`` keys."""

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        hidden_dim: int = 512,
        output_dim: int = 128,
        temperature: float = 0.1,
        memory_bank_size: int = 4096,
        momentum: float = 0.99,
    ) -> None:
        super().__init__(backbone, mean, std)
        if temperature <= 0 or memory_bank_size < 1:
            raise ValueError(f"need temperature > 0 and memory_bank_size >= 1, got {temperature}, {memory_bank_size}")
        self.projection_head = MoCoProjectionHead(feature_dim, hidden_dim, output_dim)
        self.criterion = NTXentLoss(temperature=temperature, memory_bank_size=(memory_bank_size, output_dim))
        bank = self.criterion.memory_bank
        for name in ("bank", "bank_ptr"):  # lightly's are non-persistent: saved here, so a resume is exact
            bank.register_buffer(name, getattr(bank, name), persistent=True)
        self.init_targets(momentum, momentum)

    def loss(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """``½ (L(q0, k1) + L(q1, k0))``: NT-Xent of the queries ``q`` against the momentum keys ``k`` of the other
        view and the memory bank's keys (float32, autocast off, as :meth:`SSLModel.loss`)."""
        q0, q1 = self(x0), self(x1)
        k0, k1 = self.target(x0), self.target(x1)
        with torch.autocast(q0.device.type, enabled=False):
            return 0.5 * (self.criterion(q0.float(), k1.float()) + self.criterion(q1.float(), k0.float()))
