"""One loader for published and sweep-made backbone checkpoints, which refuses a partial fit.

:func:`load_weights` reads a state-dict file with ``torch.load(..., weights_only=True)`` (no pickled code runs),
maps its keys onto the backbone's and loads **every** tensor of the backbone, or raises ``ValueError`` (one line)
naming the missing ones. The known layouts:

- **wrappers** -- ``{"state_dict": …}`` (akamaster's CIFAR ResNets, with ``best_prec1``; timm training
  checkpoints), ``{"model": …}``, DINO's ``{"teacher": …, "student": …}`` (the teacher is taken, as DINO evaluates);
- **key prefixes** -- ``module.`` (``DataParallel``), ``_orig_mod.`` (``torch.compile``), ``backbone.`` (DINO's
  ``MultiCropWrapper``, the sweep's SSL models), ``model.`` / ``encoder.`` / ``teacher.`` / ``student.``;
- **the CIFAR ResNet stem** -- akamaster/pytorch_resnet_cifar10 names it ``conv1`` / ``bn1`` at the top level, the
  sweep's :class:`~experiments.models.resnet.CifarResNet` ``stem.0`` / ``stem.1`` (its blocks' ``conv1, bn1, conv2,
  bn2`` and the parameter-free option-A shortcut agree);
- torchvision and timm state dicts as they are (a ViT's ``pos_embed`` is resampled to the model's patch grid);
- the sweep's SSL ``model/weights.pt`` -- ``backbone.*``, the input normalisation ``normalize.mean`` / ``.std``
  (returned in :attr:`LoadedCheckpoint.normalization`), the heads and the loss state.

Keys of known heads (:data:`HEAD_NAMES`: classifiers ``fc`` / ``linear`` / ``head``, projection and prediction
heads, momentum copies, a loss's memory bank) are dropped and named in the log; any other key the backbone lacks is
an error. ``num_batches_tracked`` (a BatchNorm counter, read only when training with ``momentum=None``; a frozen
backbone is always in eval mode) is loaded when the file has it and otherwise kept at 0: checkpoints saved before
PyTorch 0.4.1, such as akamaster's, have none.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from experiments.file_hash import file_sha256

log = logging.getLogger(__name__)

#: Wrapper entries whose value is the state dict, in order of preference (DINO: the teacher, not the student).
WRAPPER_KEYS = ("teacher", "state_dict", "model", "model_state_dict", "module", "net", "network")

#: Key prefixes stripped (repeatedly) from every key: data-parallel, compile, SSL and DINO wrappers.
PREFIXES = ("module.", "_orig_mod.", "backbone.", "model.", "encoder.", "teacher.", "student.")

#: The first name of keys that belong to heads (and training state), not to the backbone: dropped and logged.
HEAD_NAMES = frozenset(
    {
        "fc",  # torchvision classifiers
        "linear",  # akamaster CIFAR ResNets
        "head",  # timm classifiers, DINO's projection head
        "heads",
        "head_dist",
        "classifier",
        "projection_head",  # the sweep's SSL models (lightly heads)
        "prediction_head",
        "projection_head_momentum",
        "backbone_momentum",  # BYOL / MoCo momentum copies
        "projector",
        "predictor",
        "criterion",  # a loss's state, e.g. MoCo's memory bank
    }
)

#: Keys that carry the input normalisation a model was trained with (the sweep's ``Normalize`` layer).
NORMALIZE_KEYS = ("normalize.mean", "normalize.std")

#: How many key names a message lists before it gives the count only.
SHOWN = 5


@dataclass(frozen=True)
class LoadedCheckpoint:
    """What :func:`load_weights` loaded.

    Attributes:
        path: The file.
        sha256: Hex SHA-256 of the file's bytes.
        tensors_loaded: Backbone state-dict entries set from the file (parameters and buffers).
        layout: How the keys were found (wrapper, stripped prefixes, renames), e.g. ``state_dict; module.; stem``.
        dropped: Head keys of the file that were not loaded.
        normalization: ``(mean, std)`` the checkpoint was trained with, when it records it (``normalize.*``).
    """

    path: Path
    sha256: str
    tensors_loaded: int
    layout: str
    dropped: tuple[str, ...] = ()
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None


def _names(keys: list[str]) -> str:
    """``a, b, c, … (N in all)``: the first :data:`SHOWN` of ``keys`` and their count."""
    shown = ", ".join(keys[:SHOWN])
    return f"{shown}, … ({len(keys)} in all)" if len(keys) > SHOWN else shown


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """``(state dict, wrapper)``: the tensors of a checkpoint file, unwrapped from :data:`WRAPPER_KEYS` entries
    (``wrapper`` names them, ``"flat"`` when none). Loaded with ``weights_only=True``; the ``argparse.Namespace``
    that DINO and timm training checkpoints store their arguments in is allowed, nothing else that is not data."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"backbone weights not found: {p}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unpickling error says what it refused; keep its first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"backbone weights {p} cannot be read as a state dict (weights_only=True): {first}") from None
    where: list[str] = []
    while isinstance(obj, Mapping):  # a state dict's values are tensors: a mapping value is a wrapper's
        key = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            break
        where.append(key)
        obj = obj[key]
    if not isinstance(obj, Mapping):
        raise ValueError(f"backbone weights {p} hold a {type(obj).__name__}, not a state dict")
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ValueError(f"backbone weights {p} hold no tensors (entries: {_names([str(k) for k in obj])})")
    return state, ".".join(where) or "flat"


def canonical_keys(state: Mapping[str, torch.Tensor], model_keys: set[str]) -> tuple[dict[str, torch.Tensor], str]:
    """``(state with the model's key names, what was changed)``: :data:`PREFIXES` stripped, and a CIFAR ResNet's
    top-level ``conv1`` / ``bn1`` renamed to the sweep's ``stem.0`` / ``stem.1`` when the model has that stem.
    Two file keys that land on one name (e.g. a flattened student and teacher) are an error."""
    cifar_stem = "stem.0.weight" in model_keys and "conv1.weight" not in model_keys
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    changes: dict[str, None] = {}
    for key, value in state.items():
        k = key
        while k.startswith(PREFIXES):
            head, k = k.split(".", 1)
            changes[f"{head}."] = None
        if cifar_stem and k.split(".", 1)[0] in ("conv1", "bn1"):
            k = ("stem.0." if k.startswith("conv1.") else "stem.1.") + k.split(".", 1)[1]
            changes["conv1/bn1→stem"] = None
        if k in out:
            raise ValueError(f"checkpoint keys {origin[k]!r} and {key!r} both map to {k!r}")
        out[k], origin[k] = value, key
    return out, "; ".join(changes) or "as is"


def _resample_pos_embed(model: nn.Module, value: torch.Tensor, want: torch.Size) -> torch.Tensor | None:
    """A ViT's ``pos_embed`` resampled to the model's patch grid (timm's ``resample_abs_pos_embed``, bicubic), or
    ``None`` when ``value`` is not a position embedding of another grid size of the same width."""
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if grid is None or value.ndim != 3 or value.shape[-1] != want[-1]:
        return None
    from timm.layers import resample_abs_pos_embed

    prefix = 0 if getattr(model, "no_embed_class", False) else int(getattr(model, "num_prefix_tokens", 1))
    resized = resample_abs_pos_embed(value.float(), list(grid), num_prefix_tokens=prefix, verbose=False)
    return resized.to(value.dtype) if resized.shape == want else None


def _split(
    model: nn.Module, own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], where: str
) -> tuple[dict[str, torch.Tensor], list[str], tuple[tuple[float, ...], tuple[float, ...]] | None]:
    """``(tensors to load, dropped head keys, normalisation)``; raises ``ValueError`` on a key that is neither the
    backbone's nor a known head's, and on a tensor of the wrong shape."""
    load, dropped, unknown, wrong = {}, [], [], []
    for key, value in state.items():
        if key in own:
            if value.shape != own[key].shape:
                value = _resample_pos_embed(model, value, own[key].shape) if key == "pos_embed" else None
                if value is None:
                    wrong.append(f"{key} {tuple(state[key].shape)} vs {tuple(own[key].shape)}")
                    continue
                log.info("%s: pos_embed resampled from %s to %s", where, tuple(state[key].shape), tuple(own[key].shape))
            load[key] = value
        elif key.split(".", 1)[0] in HEAD_NAMES:
            dropped.append(key)
        elif key not in NORMALIZE_KEYS:
            unknown.append(key)
    if unknown:
        raise ValueError(
            f"backbone weights {where} hold {len(unknown)} tensors that are neither the backbone's nor a "
            f"known head's: {_names(unknown)}"
        )
    if wrong:
        raise ValueError(f"backbone weights {where}: {len(wrong)} tensors have the wrong shape: {_names(wrong)}")
    norm = None
    if all(k in state for k in NORMALIZE_KEYS):
        mean, std = (tuple(float(x) for x in state[k].flatten().tolist()) for k in NORMALIZE_KEYS)
        norm = (mean, std)
    return load, dropped, norm


def _log_load(where: str, info: LoadedCheckpoint, counters_kept: int) -> None:
    """The INFO line of a load: tensors, layout, the dropped heads by module, the BatchNorm counters kept at 0."""
    heads = Counter(k.split(".", 1)[0] for k in info.dropped)
    dropped = ", ".join(f"{h} ({n})" for h, n in heads.items()) or "none"
    log.info(
        "backbone weights %s: loaded %d tensors (keys: %s); dropped head tensors: %s",
        where,
        info.tensors_loaded,
        info.layout,
        dropped,
    )
    if info.dropped:
        log.debug("dropped keys: %s", ", ".join(info.dropped))
    if counters_kept:
        log.info("%s: %d BatchNorm num_batches_tracked counters absent from the file, kept at 0", where, counters_kept)


def load_weights(model: nn.Module, path: str | Path, *, name: str = "backbone") -> LoadedCheckpoint:
    """Load the checkpoint at ``path`` into ``model`` (in place): every entry of ``model.state_dict()`` but the
    ``num_batches_tracked`` counters must come from the file (see the module doc for the layouts).

    Raises:
        FileNotFoundError: No file at ``path``.
        ValueError: One line: the file is not a state dict, lacks backbone tensors (the first few named, and their
            count), holds a tensor of the wrong shape, or a key that is neither the backbone's nor a known head's.
    """
    p = Path(path).expanduser()
    raw, wrapper = read_state_dict(p)
    own = model.state_dict()
    state, changes = canonical_keys(raw, set(own))
    load, dropped, norm = _split(model, own, state, str(p))
    required = [k for k in own if not k.endswith("num_batches_tracked")]
    missing = [k for k in required if k not in load]
    if missing:
        raise ValueError(
            f"backbone weights {p} lack {len(missing)} of the {len(required)} tensors of {name}: {_names(missing)} "
            f"(keys seen: {changes}; not a checkpoint of this backbone, or a layout the loader does not know)"
        )
    model.load_state_dict({**own, **load}, strict=True)
    info = LoadedCheckpoint(p, file_sha256(p), len(load), f"{wrapper}; {changes}", tuple(dropped), norm)
    _log_load(str(p), info, sum(1 for k in own if k.endswith("num_batches_tracked") and k not in load))
    return info


__all__ = [
    "HEAD_NAMES",
    "PREFIXES",
    "WRAPPER_KEYS",
    "LoadedCheckpoint",
    "canonical_keys",
    "load_weights",
    "read_state_dict",
]
