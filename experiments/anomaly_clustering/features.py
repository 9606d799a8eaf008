"""PatchCore-style patch features (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022).

Intermediate feature maps of a backbone (CNN layers such as ``layer2`` + ``layer3``; ViT blocks such as
``blocks.10`` + ``blocks.11``, their patch tokens laid out on the token grid) are turned into one embedding per
location of the first layer's grid:

1. local neighbourhood aggregation: every location's ``patchsize x patchsize`` neighbourhood (zero padding, stride
   1) is unfolded into one vector (PatchCore's ``PatchMaker``);
2. the maps of later (coarser) layers are bilinearly resized to the first layer's grid;
3. per-layer projection: adaptive average pooling of each vector to ``pretrain_embed_dimension`` (``MeanMapper``);
4. fusion: the layers' projections are stacked and average-pooled to ``target_embed_dimension`` (``Aggregator``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from experiments.models.checkpoints import LoadedCheckpoint, load_weights

log = logging.getLogger(__name__)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _torchvision(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return getattr(torchvision.models, name)(weights=None)

    return build


def _timm(name: str, **kwargs: object) -> Callable[[int], nn.Module]:
    def build(image_size: int) -> nn.Module:
        import timm

        return timm.create_model(name, pretrained=False, num_classes=0, img_size=image_size, **kwargs)

    return build


def _resnet20() -> nn.Module:
    from experiments.models.resnet import resnet20

    return resnet20()


#: Backbones by name: ``(kind, builder, default layers)``; CNN builders take no argument, ViT builders the image size.
#: ``resnet20`` is the sweep's CIFAR ResNet-20: its weights can be a self-supervised trial's ``model/weights.pt``
#: (``weights: "trial:<key>"``; the ``backbone.`` prefix is stripped, the SSL heads dropped) or akamaster's
#: pytorch_resnet_cifar10 ``resnet20`` checkpoint (its ``conv1`` / ``bn1`` stem is mapped to ``stem.0`` / ``stem.1``).
BACKBONES: dict[str, tuple[str, Callable, tuple[str, ...]]] = {
    "resnet20": ("cnn", _resnet20, ("layer2", "layer3")),
    "resnet18": ("cnn", _torchvision("resnet18"), ("layer2", "layer3")),
    "resnet50": ("cnn", _torchvision("resnet50"), ("layer2", "layer3")),
    "wide_resnet50_2": ("cnn", _torchvision("wide_resnet50_2"), ("layer2", "layer3")),
    "vit_tiny": ("vit", _timm("vit_tiny_patch16_224"), ("blocks.10", "blocks.11")),
    "vit_small": ("vit", _timm("vit_small_patch16_224"), ("blocks.10", "blocks.11")),
    "vit_base_patch8": ("vit", _timm("vit_base_patch8_224"), ("blocks.10", "blocks.11")),  # DINO ViT-B/8's shape
}


def build_backbone(name: str, image_size: int = 224) -> tuple[nn.Module, str]:
    """``(model, kind)``: backbone ``name`` of :data:`BACKBONES`, randomly initialised, without its classifier (a
    torchvision ResNet's ``fc`` becomes ``nn.Identity``: the model returns its pooled features)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(BACKBONES)}")
    kind, build, _ = BACKBONES[name]
    model = build() if kind == "cnn" else build(image_size)
    if isinstance(getattr(model, "fc", None), nn.Linear):
        model.fc = nn.Identity()
    return model, kind


def load_backbone(
    name: str, weights: str | Path | None = None, image_size: int = 224
) -> tuple[nn.Module, str, LoadedCheckpoint | None]:
    """``(model, kind, checkpoint)``: backbone ``name`` (:func:`build_backbone`) in eval mode with every tensor
    loaded from the local checkpoint file ``weights`` by :func:`experiments.models.checkpoints.load_weights`
    (torchvision, timm, DINO, akamaster CIFAR ResNet and the sweep's SSL layouts; a partial fit raises
    ``ValueError``), or randomly initialised when ``weights`` is ``None`` (``checkpoint`` is then ``None``)."""
    model, kind = build_backbone(name, image_size)
    if weights is None:
        log.warning("backbone %s is randomly initialised (no weights given)", name)
        return model.eval(), kind, None
    return model.eval(), kind, load_weights(model, weights, name=name)


class PatchFeatureExtractor(nn.Module):
    """Patch embeddings of images: ``forward(x) -> (B, h * w, target_embed_dimension)`` (see the module doc).

    Args:
        backbone: A name of :data:`BACKBONES`.
        layers: Module names whose outputs are used; ``None``: the backbone's defaults (``layer2, layer3`` /
            ``blocks.10, blocks.11``).
        patchsize: Neighbourhood aggregated at every location.
        pretrain_embed_dimension: Per-layer projection size.
        target_embed_dimension: Fused embedding size.
        weights: Local state-dict file, or ``None`` for random initialisation (``random_init`` says which;
            ``checkpoint`` is the :class:`~experiments.models.checkpoints.LoadedCheckpoint`, or ``None``).
        image_size: Input size (ViTs are built for it).
    """

    def __init__(
        self,
        backbone: str = "wide_resnet50_2",
        layers: Sequence[str] | None = None,
        *,
        patchsize: int = 3,
        pretrain_embed_dimension: int = 1024,
        target_embed_dimension: int = 1024,
        weights: str | Path | None = None,
        image_size: int = 224,
    ) -> None:
        super().__init__()
        if patchsize < 1 or patchsize % 2 == 0:
            raise ValueError(f"patchsize must be a positive odd number, got {patchsize}")
        if pretrain_embed_dimension < 1 or target_embed_dimension < 1:
            raise ValueError("embedding dimensions must be >= 1")
        self.model, self.kind, self.checkpoint = load_backbone(backbone, weights, image_size)
        self.layers = tuple(layers) if layers else BACKBONES[backbone][2]
        modules = dict(self.model.named_modules())
        unknown = [name for name in self.layers if name not in modules]
        if unknown:
            raise ValueError(
                f"backbone {backbone!r} has no layer(s) {unknown}; e.g. {', '.join(n for n in list(modules)[1:8])}"
            )
        self.patchsize, self.pre, self.target = patchsize, pretrain_embed_dimension, target_embed_dimension
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self._captured: dict[str, torch.Tensor] = {}
        for name in self.layers:
            modules[name].register_forward_hook(self._hook(name))
        self.grid_shape: tuple[int, int] = (0, 0)

    @property
    def random_init(self) -> bool:
        """Whether the backbone is randomly initialised (no checkpoint was loaded)."""
        return self.checkpoint is None

    def _hook(self, name: str) -> Callable:
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            self._captured[name] = output

        return hook

    def _as_map(self, t: torch.Tensor) -> torch.Tensor:
        if self.kind == "cnn":
            return t
        prefix = getattr(self.model, "num_prefix_tokens", 1)
        tokens = t[:, prefix:]
        side = round(tokens.shape[1] ** 0.5)
        return tokens.transpose(1, 2).reshape(t.shape[0], t.shape[2], side, side)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        self._captured.clear()
        self.model((x - self.mean) / self.std)
        maps = [self._as_map(self._captured[name]) for name in self.layers]
        h, w = maps[0].shape[-2:]
        self.grid_shape = (int(h), int(w))
        projected = []
        for fmap in maps:
            b, c = fmap.shape[:2]
            patches = F.unfold(fmap, kernel_size=self.patchsize, padding=self.patchsize // 2)  # (B, C p p, h' w')
            patches = patches.reshape(b, c * self.patchsize**2, *fmap.shape[-2:])
            if patches.shape[-2:] != (h, w):
                patches = F.interpolate(patches, size=(h, w), mode="bilinear", align_corners=False)
            flat = patches.permute(0, 2, 3, 1).reshape(b * h * w, 1, -1)
            projected.append(F.adaptive_avg_pool1d(flat, self.pre).squeeze(1))
        fused = torch.stack(projected, dim=1).reshape(len(projected[0]), 1, -1)
        fused = F.adaptive_avg_pool1d(fused, self.target).squeeze(1)
        return fused.reshape(x.shape[0], h * w, self.target)

    def extract(self, images: torch.Tensor, batch_size: int = 32, device: str | torch.device = "cpu") -> np.ndarray:
        """Patch embeddings ``(B, P, D)`` float32 of uint8 (or [0, 1] float) ``images`` in batches."""
        self.to(device).eval()
        out = [self(images[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)]
        return torch.cat(out).numpy()
