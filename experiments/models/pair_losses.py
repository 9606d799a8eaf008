"""Constraint sampling and margin losses shared by the label-supervised metric-learning models.

Contrastive loss (Hadsell, Chopra & LeCun, "Dimensionality Reduction by Learning an Invariant Mapping", CVPR 2006):
for a pair at distance ``d``, ``d**2`` when similar and ``max(0, margin - d)**2`` when dissimilar. Triplet margin
loss (Schroff et al., "FaceNet", CVPR 2015): ``max(0, d(a, p) - d(a, n) + margin)``, via
``torch.nn.functional.triplet_margin_loss``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Added under the square root so the gradient of a distance is finite at 0.
DIST_EPS = 1e-12


def pair_distance(za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of every row of ``za`` to the same row of ``zb``."""
    return torch.sqrt(((za - zb) ** 2).sum(dim=-1) + DIST_EPS)


def contrastive_loss(za: torch.Tensor, zb: torch.Tensor, similar: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean contrastive loss of the pairs ``(za[i], zb[i])``: ``s d**2 + (1 - s) max(0, margin - d)**2``.

    Zero (still a graph node) for an empty set of pairs."""
    if len(za) == 0:
        return za.sum() * 0.0
    d = pair_distance(za, zb)
    s = similar.to(d.dtype)
    return (s * d.square() + (1 - s) * F.relu(margin - d).square()).mean()


def _random_partner(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For every row of the boolean ``(B, B)`` ``mask``, a uniformly random column where it is true (torch's
    global generator); returns ``(column, row_has_one)``."""
    scores = torch.rand(mask.shape, device=mask.device).masked_fill(~mask, -1.0)
    col = scores.argmax(dim=1)
    return col, mask.any(dim=1)


def _positives_and_negatives(
    labels: torch.Tensor,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``(indices, (positive, has_positive), (negative, has_negative))``: for every image of the batch a random other
    image with the same label and one with a different label."""
    idx = torch.arange(len(labels), device=labels.device)
    same = (labels[:, None] == labels[None, :]) & (idx[:, None] != idx[None, :])
    return idx, _random_partner(same), _random_partner(labels[:, None] != labels[None, :])


def sample_pairs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pairwise constraints from a batch: ``(first, second, similar)`` index and flag tensors.

    Every image of the batch is the first element of one pair; a fair coin (torch's global generator) decides
    whether its partner is drawn uniformly from the images with the same label (a similar pair) or from those with
    a different label (dissimilar); when the batch has no such image the other kind is drawn. Images with neither
    (a batch of one) get no pair."""
    idx, (pos, has_pos), (neg, has_neg) = _positives_and_negatives(labels)
    want_similar = torch.rand(len(labels), device=labels.device) < 0.5
    similar = (want_similar & has_pos) | (~has_neg & has_pos)
    partner = torch.where(similar, pos, neg)
    keep = has_pos | has_neg
    return idx[keep], partner[keep], similar[keep]


def sample_triplets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triplet constraints from a batch: for every anchor with at least one other image of its label and one of
    another label, a uniformly random positive and negative (torch's global generator); ``(anchor, positive,
    negative)`` index tensors."""
    idx, (pos, has_pos), (neg, has_neg) = _positives_and_negatives(labels)
    keep = has_pos & has_neg
    return idx[keep], pos[keep], neg[keep]


def triplet_loss(za: torch.Tensor, zp: torch.Tensor, zn: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean triplet margin loss ``max(0, d(a, p) - d(a, n) + margin)``; zero for no triplets."""
    if len(za) == 0:
        return za.sum() * 0.0
    return F.triplet_margin_loss(za, zp, zn, margin=margin, p=2, eps=1e-6)
