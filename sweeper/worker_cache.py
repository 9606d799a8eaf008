"""What a trial worker process keeps between the trials it runs (Tune reuses the process, ``tune.reuse_actors``).

Only inputs that do not depend on the trial: the configured dataset, keyed by the whole ``dataset`` section (name,
root, image size, class caps, subset seed). Trials only read it (every split they use is a copy or a new tensor).
"""

from __future__ import annotations

import json

from experiments.data import ImageDataset
from sweeper.config import SweepConfig, load_dataset

_DATASETS: dict[str, ImageDataset] = {}

#: Datasets kept per process (a sweep has one; a few for processes that serve several sweeps).
MAX_DATASETS = 2


def cached_dataset(cfg: SweepConfig) -> ImageDataset:
    """:func:`sweeper.config.load_dataset` of ``cfg``, loaded once per process and ``dataset`` section."""
    key = json.dumps(cfg.dataset.model_dump(mode="json"), sort_keys=True)
    data = _DATASETS.get(key)
    if data is None:
        data = load_dataset(cfg)
        while len(_DATASETS) >= MAX_DATASETS:
            _DATASETS.pop(next(iter(_DATASETS)))
        _DATASETS[key] = data
    return data
