"""The role of an evaluated cloud in a trial's score table: ``baseline``, ``in_distribution`` or ``other``.

One rule for single- and multi-class training. A trial trains on the classes ``train_classes`` and is keyed by
them joined with ``+`` (``"1"``, or ``"0+1"``); every evaluated cloud (``eval_class``) then has exactly one role:

* ``baseline`` -- the cloud named by the training key: the held-out test images of the training class, or with
  several training classes their pooled test images (``"0+1"``). "Normal train vs normal test".
* ``in_distribution`` -- a cloud made of in-distribution test images that is not the baseline: with several
  training classes each training class's own test cloud (``"0"``, ``"1"``: subsets of the baseline), and the
  nearest-class-mean accuracy row ``"in_distribution"``. Single-class training has none.
* ``other`` -- everything else: the classes not trained on (``ood.seen_classes`` included), the ``novelty`` set of
  the detection scores and every anomaly set.

Every summary "over the other classes" (baseline rank, separation AUROC, ``p_baseline_below``, the mean k-NN AUROC)
uses the ``role == "other"`` rows only; the ``in_distribution`` rows are reported but never compared against.
"""

from __future__ import annotations

from collections.abc import Sequence

#: The roles, in the order tables list them.
ROLES: tuple[str, ...] = ("baseline", "in_distribution", "other")

#: Separator of a class-set training key (``"0+1"``), as :data:`sweeper.config.CLASS_SET_SEPARATOR`.
CLASS_SET_SEPARATOR = "+"

#: ``eval_class`` of the nearest-class-mean accuracy row.
IN_DISTRIBUTION_ROW = "in_distribution"


def role_of(eval_class: str, train_class: str) -> str:
    """The role of ``eval_class`` in the trial keyed ``train_class`` (a class or classes joined with ``+``)."""
    eval_class, train_class = str(eval_class), str(train_class)
    if eval_class == train_class:
        return "baseline"
    members = train_class.split(CLASS_SET_SEPARATOR)
    if eval_class == IN_DISTRIBUTION_ROW or (len(members) > 1 and eval_class in members):
        return "in_distribution"
    return "other"


def roles_of(eval_classes: Sequence[str], train_class: str) -> list[str]:
    """:func:`role_of` of every entry of ``eval_classes``."""
    return [role_of(c, train_class) for c in eval_classes]
