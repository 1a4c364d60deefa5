"""What every dataset provides: uint8 images fetched by index, split into train/val/test."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch

from .. import schema
from ..errors import AvaeError
from .files import ROOT, given_path, reject_options


class ImageSet:
    """A sequence of uint8 NCHW images addressed by integer indices.

    Subclasses implement `__len__` and `images`; nothing is ever materialised as a float copy.
    """

    shape: tuple[int, int, int]  # (C, H, W)

    def __len__(self) -> int:
        raise NotImplementedError

    def images(self, idx: np.ndarray) -> torch.Tensor:
        """uint8 tensor of shape (len(idx), C, H, W)."""
        raise NotImplementedError

    def subset(self, idx: np.ndarray) -> "Subset":
        return Subset(self, np.asarray(idx, dtype=np.int64))


class ArrayImages(ImageSet):
    """Images held in one uint8 array (N, C, H, W)."""

    def __init__(self, array: np.ndarray, labels: np.ndarray | None = None):
        if array.dtype != np.uint8 or array.ndim != 4:
            raise ValueError("ArrayImages needs a uint8 array of shape (N, C, H, W)")
        self.array = array
        self.labels = labels
        self.shape = tuple(array.shape[1:])

    def __len__(self) -> int:
        return len(self.array)

    def images(self, idx: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.array[np.asarray(idx)])


class Subset(ImageSet):
    """A view of another ImageSet through an index array."""

    def __init__(self, base: ImageSet, indices: np.ndarray):
        self.base = base
        self.indices = indices
        self.shape = base.shape

    def __len__(self) -> int:
        return len(self.indices)

    def images(self, idx: np.ndarray) -> torch.Tensor:
        return self.base.images(self.indices[np.asarray(idx)])


@dataclass
class Dataset:
    """A dataset ready for training: its splits and how its pixels are to be modelled."""

    name: str
    train: ImageSet
    val: ImageSet
    test: ImageSet | None = None
    likelihood: str = "gaussian"  # "gaussian" (SSE on [0,1] pixels) or "bernoulli" (logits)
    value_range: tuple[float, float] = (0.0, 1.0)  # range of the model's float input
    info: dict = field(default_factory=dict)  # provenance: files, split rule, sizes
    factor_grid: ImageSet | None = None  # the whole set with ground-truth factors (FactorImages), if any

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.train.shape


def to_float(images: torch.Tensor, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """uint8 images → float32 in `value_range` (the model's input convention)."""
    x = images.float().div_(255.0)
    lo, hi = value_range
    if (lo, hi) != (0.0, 1.0):
        x = x.mul_(hi - lo).add_(lo)
    return x


def check_unchanged(data: Dataset, recorded: dict) -> None:
    """Refuse data whose fingerprint differs from the one a run recorded (its `dataset_info`)."""
    before, now = recorded.get("fingerprint"), data.info.get("fingerprint")
    if before is None or before == now:
        return
    if data.name == "python":
        raise AvaeError("the images given differ from those this run was trained on (their SHA-256 differs); "
                        "pass the same data= and val_data= as when it was trained")
    then, there = recorded.get("source", {}), data.info.get("source", {})
    size = {"files": "{} files", "shape": "shape {}"}
    change = next((f"{size[k].format(then[k])} then, {size[k].format(there[k])} now" for k in size
                   if k in then and then[k] != there.get(k)), "files modified")
    raise AvaeError(f"the data in {there.get('path', then.get('path'))} changed since this run was trained ({change}); "
                    "restore them, or train a new run on the new data")


@dataclass(frozen=True)
class NoOptions:
    """A dataset that takes no data.options."""


@dataclass(frozen=True)
class Registered:
    load: Callable[..., Dataset]  # fn(root, seed, options) -> Dataset
    where: Callable[[str | None], str]  # fn(root) -> where its files are looked for, and what is found there
    options: type  # the frozen dataclass of its data.options: each option's default and range, declared once

    def options_from(self, name: str, given: dict):
        """`given` data.options checked against the declaration, every default filled in."""
        declared = schema.fields(self.options)
        reject_options(name, {k: v for k, v in given.items() if k not in declared})
        return self.options(**schema.check_fields("data.options", declared, given))

    @property
    def summary(self) -> str:
        return (self.load.__doc__ or "").strip().splitlines()[0]


DATASETS: dict[str, Registered] = {}


def register_dataset(name: str, where: Callable[[str | None], str], options: type = NoOptions):
    """Decorator: make a loader `fn(root, seed, options) -> Dataset` available by name; `options`
    is the dataclass its data.options are checked against and completed from."""

    def wrap(fn):
        DATASETS[name] = Registered(fn, where, options)
        return fn

    return wrap


def dataset_options(name: str, given: dict) -> dict:
    """The dataset's whole data.options: `given`, checked, with every default written out."""
    _known(name)
    return asdict(DATASETS[name].options_from(name, given))


def _known(name: str) -> None:
    if name not in DATASETS:
        raise AvaeError(f"unknown dataset '{name}'; choose one of: {', '.join(sorted(DATASETS))}")


def load_dataset(name: str, root: str | None = None, seed: int = 0, **options) -> Dataset:
    _known(name)
    given_path(root, ROOT)  # every dataset: an empty root would mean the current folder
    return DATASETS[name].load(root=root, seed=seed, options=DATASETS[name].options_from(name, options))
