"""The data of a run's configuration: the dataset, its training and validation sets cut to the sizes
asked (the training subset drawn from train.seed), small sets held in memory."""
from __future__ import annotations

import math

import numpy as np

from ..errors import AvaeError
from .base import ArrayImages, Dataset, ImageSet, Subset, load_dataset
from .given import NAME as GIVEN, GivenData

HELD_BYTES = 1 << 29  # a set cut to at most this size is read (or rendered) once and kept in memory


def load_data(cfg, *, cut: bool = True, given: GivenData | None = None) -> Dataset:
    """The dataset of a Config (`given`: the Python objects of a run whose data.name is `python`); with
    `cut`, the training and validation sets cut to the sizes asked (and, when small, held in memory)."""
    dc = cfg.data
    if given is not None and dc.name != GIVEN:
        raise AvaeError(f"data= was given, but this run's data are the dataset '{dc.name}'; leave data= out")
    if given is not None:
        data = given.dataset(dc.options, dc.split_seed)
    else:
        data = load_dataset(dc.name, root=dc.root, seed=dc.split_seed, **dc.options)
    if not cut:
        return data
    if dc.train_size is not None:
        if not 1 <= dc.train_size <= len(data.train):
            raise AvaeError(f"data.train_size must be between 1 and {len(data.train)}, got {dc.train_size!r}")
        pick = np.random.default_rng([cfg.train.seed, 2]).choice(len(data.train), dc.train_size, replace=False)
        data.train = data.train.subset(np.sort(pick))
    if dc.val_size is not None:
        if not 1 <= dc.val_size <= len(data.val):
            raise AvaeError(f"data.val_size must be between 1 and {len(data.val)}, got {dc.val_size!r}")
        data.val = data.val.subset(np.arange(dc.val_size))
    if len(data.train) < cfg.train.batch_size:
        raise AvaeError(f"the training split holds {len(data.train)} images, fewer than train.batch_size "
                        f"{cfg.train.batch_size}; lower train.batch_size or add images")
    data.train, data.val = _held(data.train), _held(data.val)
    return data


def _held(images: ImageSet) -> ImageSet:
    """A cut set as one array: every epoch reads it again, and rendered sets are slow to read."""
    if not isinstance(images, Subset) or len(images) * math.prod(images.shape) > HELD_BYTES:
        return images
    return ArrayImages(images.images(np.arange(len(images))).numpy())
