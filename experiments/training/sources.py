"""The batch sources of :func:`experiments.training.loop.fit`: two SSL views per image, labelled batches, and seen
out-of-distribution batches drawn alongside them. Each owns its generators (seeded from the run's seed, saved in and
restored from a checkpoint) and computes the model's loss on its batches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from experiments.augment import Perturbation, TwoViews
from experiments.checkpointing import generator_state, restore_generator
from experiments.training.state import TrainState
from experiments.views import BatchedSSLViews

CPU = torch.device("cpu")


class TwoViewSource:
    """Two SSL views of every image of a shuffled batch (full batches only), optionally perturbed; the loss is
    ``model.loss(x0, x1)`` (``torch.compile``-d with ``compile``).

    ``pipeline="batched"``: the images live on the device and :class:`~experiments.views.BatchedSSLViews` makes the
    views of a whole batch from ``views_gen`` (seeded ``seed + 2``); ``"per_image"``: a ``DataLoader`` over
    :class:`~experiments.augment.TwoViews` with lightly's per-image transforms (torch's and numpy's global
    generators, which :meth:`seed` reseeds). Shuffling draws from ``loader_gen`` (``seed``), perturbations from
    ``perturb_gen`` on the device (``seed + 1``).
    """

    def __init__(
        self,
        images: torch.Tensor,
        batch_size: int,
        view: Any,
        *,
        pipeline: str = "batched",
        perturb: Perturbation | None = None,
        device: torch.device = CPU,
        memory_format: torch.memory_format = torch.contiguous_format,
        compile: bool = False,
        num_workers: int = 0,
    ) -> None:
        self.images, self.batch_size, self.perturb = images, batch_size, perturb
        self.device, self.memory_format, self.compile = device, memory_format, compile
        self.pipeline, self.num_workers = pipeline, num_workers
        self.batched_views, self.image_view = _views_for(view, pipeline)
        self.steps_per_epoch = len(images) // batch_size
        self.loader_gen = torch.Generator()
        self.perturb_gen = torch.Generator(device=device)
        self.views_gen = torch.Generator()  # on the CPU: view parameters are tiny, and the same on every device

    def seed(self, seed: int) -> None:
        np.random.seed(seed % 2**32)
        self.loader_gen.manual_seed(seed)
        self.perturb_gen.manual_seed(seed + 1)
        self.views_gen.manual_seed(seed + 2)

    def restore(self, state: TrainState, seed: int) -> None:
        rng = state.rng
        if "numpy" in rng:
            n = rng["numpy"]
            np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        if "perturb" in rng:
            restore_generator(self.perturb_gen, rng["perturb"], seed + 1 + state.epoch)
        else:  # states written before the perturbation generator was saved
            self.perturb_gen.manual_seed(seed + 1 + state.epoch)
        if "views" in rng:
            self.views_gen.set_state(rng["views"])
        else:  # states written before the batched pipeline existed
            self.views_gen.manual_seed(seed + 2 + state.epoch)

    def prepare(self, model: torch.nn.Module, device: torch.device) -> None:
        if self.batched_views is not None:
            self._epoch = _batched_loader(
                self.images.to(device), self.batch_size, self.loader_gen, self.batched_views, self.views_gen
            )
        else:
            loader = DataLoader(
                TwoViews(self.images, self.image_view),
                batch_size=self.batch_size,
                shuffle=True,
                drop_last=True,
                generator=self.loader_gen,
                num_workers=self.num_workers,
                pin_memory=device.type == "cuda",
            )
            self._epoch = lambda: loader  # a DataLoader starts a new epoch on every iteration
        self._loss = torch.compile(model.loss) if self.compile else model.loss

    def batches(self) -> Any:
        mf, device = self.memory_format, self.device
        for x0, x1 in self._epoch():
            x0 = x0.to(device, non_blocking=True).contiguous(memory_format=mf)
            x1 = x1.to(device, non_blocking=True).contiguous(memory_format=mf)
            if self.perturb is not None:
                x0, x1 = self.perturb(x0, self.perturb_gen), self.perturb(x1, self.perturb_gen)
            yield x0, x1

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict, int]:
        return self._loss(*batch), {}, len(batch[0])

    def rng_state(self) -> dict[str, Any]:
        # numpy's global generator drives lightly's random Gaussian blur in the per-image SSL views
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        numpy_state = {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        }  # tensors and plain types: weights_only-safe
        return {
            "numpy": numpy_state,
            "loader": self.loader_gen.get_state(),
            "perturb": generator_state(self.perturb_gen),  # on the training device: kept with its device type
            "views": self.views_gen.get_state(),
        }


class SeenOoDBatches:
    """Seen out-of-distribution images drawn uniformly with replacement, one batch per step, from the shuffling
    generator of the labelled batches they accompany."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def to(self, device: torch.device) -> SeenOoDBatches:
        self.images = self.images.to(device)
        return self

    def draw(self, batch_size: int, gen: torch.Generator) -> torch.Tensor:
        pick = torch.randint(len(self.images), (batch_size,), generator=gen).to(self.images.device)
        return self.images.index_select(0, pick)


class LabelledSource:
    """Shuffled batches of labelled images (full batches only) on the device, optionally flipped and perturbed, and
    for a mining model a batch of seen OoD images (:class:`SeenOoDBatches`) per step; the loss is
    ``model.loss(x, y, ood)``. Shuffling and OoD draws use ``loader_gen`` (``seed``), flips and perturbations
    ``aug_gen`` on the device (``seed + 1``)."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        ood: SeenOoDBatches | None = None,
        perturb: Perturbation | None = None,
        flip: bool = False,
        device: torch.device = CPU,
    ) -> None:
        self.images, self.labels, self.batch_size, self.ood = images, labels, batch_size, ood
        self.perturb, self.flip, self.device = perturb, flip, device
        self.steps_per_epoch = len(images) // batch_size
        self.loader_gen = torch.Generator()
        self.aug_gen = torch.Generator(device=device)

    def seed(self, seed: int) -> None:
        self.loader_gen.manual_seed(seed)
        self.aug_gen.manual_seed(seed + 1)

    def restore(self, state: TrainState, seed: int) -> None:
        restore_generator(self.aug_gen, state.rng["perturb"], seed + 1 + state.epoch)

    def prepare(self, model: torch.nn.Module, device: torch.device) -> None:
        self.x_all = self.images.to(device)
        self.y_all = self.labels.to(device=device, dtype=torch.long)
        if self.ood is not None:
            self.ood.to(device)
        self._loss = model.loss

    def _prepared(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().div_(255.0)
        if self.flip:
            mask = torch.rand(len(x), generator=self.aug_gen, device=self.device) < 0.5
            x = torch.where(mask[:, None, None, None], x.flip(-1), x)
        return self.perturb(x, self.aug_gen) if self.perturb is not None else x

    def batches(self) -> Any:
        b, device = self.batch_size, self.device
        order = torch.randperm(len(self.images), generator=self.loader_gen).to(device)
        for step in range(self.steps_per_epoch):
            idx = order[step * b : (step + 1) * b]
            x, y = self._prepared(self.x_all.index_select(0, idx)), self.y_all.index_select(0, idx)
            ood = self._prepared(self.ood.draw(b, self.loader_gen)) if self.ood is not None else None
            yield x, y, ood

    def loss(self, batch: tuple) -> tuple[torch.Tensor, dict, int]:
        total, parts = self._loss(*batch)
        return total, parts, len(batch[0])

    def rng_state(self) -> dict[str, Any]:
        return {"loader": self.loader_gen.get_state(), "perturb": generator_state(self.aug_gen)}


def _views_for(view: Any, pipeline: str) -> tuple[BatchedSSLViews | None, Callable[[Any], torch.Tensor] | None]:
    """The batched views (``pipeline="batched"``) or the per-image transform (``"per_image"``) that ``view`` stands
    for: a :class:`BatchedSSLViews`, a lightly ``SimCLRViewTransform`` (converted for the batched pipeline) or, for
    the per-image pipeline, any per-image callable."""
    if pipeline == "per_image":
        return None, view.per_image() if isinstance(view, BatchedSSLViews) else view
    if isinstance(view, BatchedSSLViews):
        return view, None
    try:
        return BatchedSSLViews.from_lightly(view), None
    except ValueError as exc:
        raise ValueError(
            f"pipeline='batched' needs a BatchedSSLViews or a lightly SimCLRViewTransform ({exc}); "
            "pass pipeline='per_image' to train with another per-image view transform"
        ) from None


def _batched_loader(
    images: torch.Tensor,
    batch_size: int,
    loader_gen: torch.Generator,
    views: BatchedSSLViews,
    views_gen: torch.Generator,
) -> Callable[[], Any]:
    """One epoch of ``(view0, view1)`` batches of the device-resident uint8 ``images``: a permutation from
    ``loader_gen`` (as the DataLoader's ``RandomSampler`` draws it), full batches only (``drop_last``)."""

    def epoch():
        order = torch.randperm(len(images), generator=loader_gen).to(images.device, non_blocking=True)
        for k in range(len(images) // batch_size):
            batch = images.index_select(0, order[k * batch_size : (k + 1) * batch_size])
            yield views(batch, views_gen), views(batch, views_gen)

    return epoch
