"""What every label-supervised model in the registry shares: a loss on a labelled batch and an embedding.

Self-supervised models (:class:`~experiments.models.base.SSLModel`) learn one class from two views of each image;
the models here learn several classes at once from their labels -- weakly-supervised metric embeddings (pairwise or
triplet constraints drawn from the labels of a batch) and metric learning for out-of-distribution detection (which
may also see a batch of "seen" out-of-distribution images). :func:`experiments.train_labelled.train_labelled` trains
them; :func:`experiments.embed.embed_images` embeds with them, as with the SSL models.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from experiments.models.base import EmbedLayer


class LabelledModel(nn.Module, ABC):
    """A model trained from labelled images of several classes.

    Subclasses implement :meth:`loss` and :meth:`embed`; both take images in ``[0, 1]``, ``(B, 3, H, W)``.
    """

    @abstractmethod
    def loss(
        self, x: torch.Tensor, y: torch.Tensor, ood: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training objective on images ``x`` with labels ``y`` (and, where the model mines them, a batch of
        seen out-of-distribution images ``ood``): ``(total, parts)`` with ``parts`` the named terms (logged per
        epoch, e.g. ``{"metric": ..., "reconstruction": ...}``)."""

    @abstractmethod
    def embed(self, x: torch.Tensor, layer: EmbedLayer = "backbone") -> torch.Tensor:
        """The studied representation of images ``x``."""

    @property
    def uses_ood(self) -> bool:
        """Whether :meth:`loss` takes a batch of seen out-of-distribution images."""
        return False
