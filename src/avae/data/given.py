"""`python`: images given as Python objects to `avae.train(data=...)` — a tensor or NumPy array of
images, or a `torch.utils.data.Dataset` whose items are images or (image, label) pairs.

Images are (N, H, W), (N, C, H, W) or (N, H, W, C) with C = 1 or 3, uint8 or floats in [0, 1]
(rounded to 255 levels); they are held in memory as uint8. Validation images are `val_data`, or
a share `data.options.val_fraction` drawn at random with data.split_seed. The run records their
shapes and a SHA-256 of their bytes, never the images: resuming or evaluating the run needs the
same objects again (`data=`, `val_data=`), and other ones are refused.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import AvaeError
from ..schema import setting
from .base import ArrayImages, Dataset, register_dataset
from .own import split

NAME = "python"
NEEDS = ("this run's images were given in Python (avae.train(data=...)); pass the same objects again: "
         "avae.resume(RUN, data=..., val_data=...) or avae.evaluate(RUN, data=..., val_data=...)")


@dataclass(frozen=True)
class GivenOptions:
    """data.options of images given in Python."""

    val_fraction: float = setting(0.1, above=0, below=1)  # share drawn for validation when no val_data is given


@register_dataset(NAME, lambda root: "images given to avae.train(data=...) in Python", GivenOptions)
def load_given(root, seed, options: GivenOptions) -> Dataset:
    """Images given as a tensor, NumPy array or torch Dataset to avae.train(data=...)."""
    raise AvaeError(NEEDS)


@dataclass(frozen=True)
class GivenData:
    """What a caller passed as `data=` and `val_data=`."""

    data: object
    val: object = None

    def dataset(self, options: dict, seed: int) -> Dataset:
        """The Dataset these objects make under the run's data.options and data.split_seed."""
        train_images, train_labels = as_uint8(self.data, "data")
        val_images, val_labels = as_uint8(self.val, "val_data") if self.val is not None else (None, None)
        fingerprint = _fingerprint(train_images, train_labels, val_images, val_labels)
        if val_images is None:
            train_idx, val_idx = split(len(train_images), options["val_fraction"], seed, "data")
            rule = (f"val = {len(val_idx)} images ({options['val_fraction']:g} of {len(train_images)}) drawn at random "
                    f"by numpy default_rng({seed}) (data.split_seed), train = the other {len(train_idx)}")
            images = ArrayImages(train_images, train_labels)
            train, val = images.subset(train_idx), images.subset(val_idx)
        else:
            if val_images.shape[1:] != train_images.shape[1:]:
                raise AvaeError(f"val_data holds images of shape {val_images.shape[1:]}, data of {train_images.shape[1:]}; "
                                "give both the same shape")
            if (train_labels is None) != (val_labels is None):
                raise AvaeError("data and val_data must both have labels or both have none")
            train, val = ArrayImages(train_images, train_labels), ArrayImages(val_images, val_labels)
            rule = f"train = data ({len(train)} images), val = val_data ({len(val)} images)"
        info = {"source": {"data": describe(self.data, train_images), "val_data": describe(self.val, val_images)},
                "fingerprint": fingerprint, "split": rule + "; no test split",
                "sizes": {"train": len(train), "val": len(val), "test": 0},
                "classes": None if train_labels is None else sorted(set(train_labels.tolist()))}
        return Dataset(NAME, train, val, None, likelihood="gaussian", value_range=(0.0, 1.0), info=info)


def as_uint8(data, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(uint8 NCHW images, int64 labels or None) of a tensor, an array, an (images, labels) pair or a Dataset."""
    labels = None
    if isinstance(data, tuple) and len(data) == 2:
        data, labels = data
        labels = _labels(labels, what)
    elif isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.Tensor):
        data, labels = _from_dataset(data, what)
    if torch.is_tensor(data):
        data = data.detach().cpu().numpy()
    if not isinstance(data, np.ndarray):
        raise AvaeError(f"{what} must be a tensor, a NumPy array, an (images, labels) pair or a torch Dataset, "
                        f"got {type(data).__name__}")
    images = _uint8(_nchw(data, what), what)
    if labels is not None and len(labels) != len(images):
        raise AvaeError(f"{what} has {len(images)} images but {len(labels)} labels; give one label per image")
    return images, labels


def describe(data, images: np.ndarray) -> dict | None:
    """What run.json records of a given object: its type, and the images' shape."""
    if data is None:
        return None
    kind = type(data[0] if isinstance(data, tuple) else data)
    return {"type": f"{kind.__module__}.{kind.__qualname__}", "shape": list(images.shape)}


def _from_dataset(dataset, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        items = [dataset[i] for i in range(len(dataset))]
    except TypeError:
        raise AvaeError(f"{what} is a torch Dataset without a length; give a map-style Dataset (with __len__)") from None
    if not items:
        raise AvaeError(f"{what} holds no images")
    pairs = isinstance(items[0], (tuple, list))
    images = [torch.as_tensor(item[0] if pairs else item) for item in items]
    labels = _labels([int(item[1]) for item in items], what) if pairs and len(items[0]) > 1 else None
    return torch.stack(images).numpy(), labels


def _labels(labels, what: str) -> np.ndarray:
    labels = np.asarray(labels.cpu() if torch.is_tensor(labels) else labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iub":
        raise AvaeError(f"the labels of {what} must be one integer per image, got {labels.dtype} of shape {labels.shape}")
    return labels.astype(np.int64)


def _nchw(images: np.ndarray, what: str) -> np.ndarray:
    if images.ndim == 3:
        return images[:, None]
    last, first = images.ndim == 4 and images.shape[3] in (1, 3), images.ndim == 4 and images.shape[1] in (1, 3)
    if not (last or first) or len(images) == 0:
        raise AvaeError(f"{what} holds an array of shape {images.shape}; give images as (N, H, W), (N, C, H, W) or "
                        "(N, H, W, C) with C = 1 or 3")
    return images if first else images.transpose(0, 3, 1, 2)  # (N, C, H, W) where both would fit


def _uint8(images: np.ndarray, what: str) -> np.ndarray:
    if images.dtype == np.uint8:
        return np.ascontiguousarray(images)
    if images.dtype.kind != "f":
        raise AvaeError(f"{what} holds {images.dtype} values; give uint8 images (0-255) or floats in [0, 1]")
    if not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise AvaeError(f"{what} holds float values outside [0, 1] (or NaN); give floats in [0, 1] or uint8 images")
    return np.rint(images.astype(np.float64) * 255).astype(np.uint8)


def _fingerprint(*arrays) -> str:
    """SHA-256 of the images and labels as the run sees them (uint8), so the same pixels match in any container."""
    digest = hashlib.sha256()
    for array in arrays:
        if array is not None:
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(b"|")
    return digest.hexdigest()[:16]
