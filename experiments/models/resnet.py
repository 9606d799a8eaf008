"""CIFAR-style ResNet-20 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, section 4.2).

Three stages of three ``torchvision`` basic blocks with 16, 32 and 64 channels, parameter-free "option A" shortcuts
(strided identity, zero-padded channels), global average pooling: a 64-d feature, ~0.27 M parameters. This is the
backbone proj18 used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock


class PaddingShortcut(nn.Module):
    """Option-A shortcut: subsample spatially by ``stride`` and zero-pad the channels from ``inplanes`` to ``planes``."""

    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad = (planes - inplanes) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, self.pad, self.pad))


class AvgPool(nn.Module):
    """``nn.AdaptiveAvgPool2d(output_size)`` with a backward pass that is deterministic on CUDA.

    ``AdaptiveAvgPool2d``'s CUDA backward accumulates with atomic adds (nondeterministic, refused under
    ``torch.use_deterministic_algorithms``). When the input's height and width are multiples of ``output_size`` --
    the case of every model here -- the same average is a plain ``avg_pool2d`` with kernel = stride = ``H / o``
    (global pooling: the spatial mean), whose backward is deterministic; other sizes fall back to the adaptive op.
    """

    def __init__(self, output_size: int) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.output_size
        h, w = x.shape[-2:]
        if o == 1:
            return x.mean(dim=(-2, -1), keepdim=True)
        if h % o == 0 and w % o == 0:
            return F.avg_pool2d(x, kernel_size=(h // o, w // o))
        return F.adaptive_avg_pool2d(x, o)


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std``; kept in the model so saved weights carry their input normalisation."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs with ``blocks_per_stage`` basic blocks per stage; ``forward`` returns pooled features.

    Args:
        blocks_per_stage: 3 gives ResNet-20, 5 ResNet-32, 9 ResNet-56.
        in_channels: Input image channels.
    """

    def __init__(self, blocks_per_stage: int = 3, in_channels: int = 3) -> None:
        super().__init__()
        if blocks_per_stage < 1:
            raise ValueError(f"blocks_per_stage must be >= 1, got {blocks_per_stage}")
        self.inplanes = 16
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 16, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
        )
        self.layer1 = self._make_stage(16, blocks_per_stage, stride=1)
        self.layer2 = self._make_stage(32, blocks_per_stage, stride=2)
        self.layer3 = self._make_stage(64, blocks_per_stage, stride=2)
        self.pool = AvgPool(1)
        self.feature_dim = 64
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        shortcut = PaddingShortcut(self.inplanes, planes, stride) if stride != 1 or self.inplanes != planes else None
        layers = [BasicBlock(self.inplanes, planes, stride, shortcut)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return torch.flatten(self.pool(x), 1)


def resnet20(in_channels: int = 3) -> CifarResNet:
    """ResNet-20: 3 blocks per stage, 64-d output."""
    return CifarResNet(3, in_channels)
