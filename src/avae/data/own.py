"""Your own images (a folder, `images.py`, or an array file, `arrays.py`): the settings and steps both share.

A source is indexed first (cheaply: file names, sizes and modification times, or an array's
shape), which gives its fingerprint. The images are then decoded once into the uint8 cache under
$AVAE_CACHE_DIR/<dataset>/, keyed by the fingerprint and the preprocessing, and read memory-mapped.
Preprocessing brings every image to one square side the networks take (`nets.supported_side`):
greyscale or RGB first (an alpha channel dropped), then a centred square crop if asked, then
Pillow's bilinear resize (antialiased when shrinking). The model sees [0, 1] (uint8 / 255).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from .. import nets
from ..errors import AvaeError
from ..schema import setting
from . import cache
from .base import ArrayImages, Dataset
from .files import cache_root, option

CACHE_VERSION = 1
MODES = {1: "L", 3: "RGB"}
TEST_ROOT = "data.options.test_root"  # names a second folder or file as the test split


@dataclass(frozen=True)
class Settings:
    """The preprocessing options (`data.options`) both datasets take."""

    size: object = setting("auto")  # the side images are resized to; auto: their own (or the nearest the networks take)
    crop: bool = setting(False)  # centre-crop to a square before resizing (else the aspect ratio is not kept)
    channels: object = setting("auto", choices=("auto", 1, 3))  # 1 (greyscale) or 3 (RGB); auto: as the images are
    val_fraction: float = setting(0.1, above=0, below=1)  # share of the images drawn at random for validation
    labels: str = setting("auto")  # the images' labels (see each dataset's own choices)
    test_root: str | None = setting(None)  # a second folder or file of images as the test split

    def __post_init__(self):
        side = self.size
        if side != "auto" and not (isinstance(side, int) and not isinstance(side, bool) and nets.supported_side(side)):
            raise AvaeError(f"data.options.size must be auto or {nets.SIDES}, got {side!r}")


class Source:
    """One folder or array file of images, indexed; subclasses read it."""

    path: Path
    labels: np.ndarray | None  # one class name or number per image, or None
    fingerprint: str  # hash of the index: changes whenever the images may have
    provenance: dict  # where the images came from, for run.json

    def __len__(self) -> int:
        raise NotImplementedError

    def survey(self) -> tuple[set[tuple[int, int]], bool]:
        """(the set of (width, height) sizes, whether every image is greyscale); checks every image."""
        raise NotImplementedError

    def image(self, i: int) -> Image.Image:
        raise NotImplementedError


def fit(image: Image.Image, side: int, crop: bool, channels: int) -> np.ndarray:
    """One image → uint8 (channels, side, side): colour mode, centred square crop if asked, resize."""
    image = image.convert(MODES[channels])
    width, height = image.size
    if crop and width != height:
        edge = min(width, height)
        left, top = (width - edge) // 2, (height - edge) // 2
        image = image.crop((left, top, left + edge, top + edge))
    if image.size != (side, side):
        image = image.resize((side, side), Image.BILINEAR)
    pixels = np.asarray(image, np.uint8)
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def choose_side(dataset: str, settings: Settings, sizes: set[tuple[int, int]], where: str) -> int:
    """The side every image is brought to: the `size` option, else the images' own (nearest supported)."""
    if settings.size != "auto":
        return settings.size
    if len(sizes) > 1:
        shown = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:3])
        raise AvaeError(f"the images in {where} have {len(sizes)} different sizes ({shown}, ...); pass "
                        f"{option('size', 64)} (or another of {nets.SIDES}) to resize them all, with "
                        f"{option('crop', 'true')} to keep their aspect ratio")
    (width, height), = sizes
    if width != height and not settings.crop:
        raise AvaeError(f"the images in {where} are {width}x{height}, not square; pass {option('crop', 'true')} "
                        f"(centre square) or {option('size', 64)} (or another of {nets.SIDES}) to stretch them")
    return nets.nearest_side(min(width, height))


def class_indices(names: np.ndarray, classes: list, where: str) -> np.ndarray:
    """Labels as indices into `classes` (sorted class names or numbers)."""
    lookup = {name: k for k, name in enumerate(classes)}
    unknown = sorted({str(n) for n in names if n not in lookup})
    if unknown:
        raise AvaeError(f"{where} has images of class {unknown[0]!r}, which the training images do not have; "
                        "give a test set with the training classes")
    return np.array([lookup[n] for n in names], np.int64)


def split(n: int, fraction: float, seed: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices: round(fraction·n) (at least one) drawn at random with `seed`.

    The validation indices stay in random order: files are sorted by class folder, and the first
    n held-out images (`avae evaluate -n`, `data.val_size`) must be a random sample of them all.
    """
    n_val = max(1, round(fraction * n))
    if n - n_val < 2:
        raise AvaeError(f"{where} holds {n} image(s), too few to split off validation images; "
                        "add images or lower data.options.val_fraction")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), order[:n_val]


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def decoded(dataset: str, source: Source, settings: Settings, shape: tuple[int, int, int] | None = None
            ) -> tuple[np.ndarray, Path]:
    """The source's images in the uint8 cache; `shape` fixes (C, H, W) (a test set follows its training set)."""
    preprocessing = [CACHE_VERSION, settings.size, settings.crop, settings.channels, shape]
    name = f"{_digest(str(source.path.resolve()), preprocessing)}-{source.fingerprint}"

    def plan() -> tuple[tuple[int, int, int], Callable[[int], np.ndarray]]:
        sizes, grey = source.survey()
        if shape is not None:
            channels, side = shape[0], shape[1]
        else:
            channels = settings.channels if settings.channels != "auto" else (1 if grey else 3)
            side = choose_side(dataset, settings, sizes, str(source.path))
        return (channels, side, side), lambda i: fit(source.image(i), side, settings.crop, channels)

    return cache.cached_images(f"{name}.npy", len(source), [cache_root() / dataset], plan, dataset,
                               stale=f"{name.split('-')[0]}-*.npy")


def load(dataset: str, train_source: Source, test_source: Source | None, settings: Settings, seed: int) -> Dataset:
    """The Dataset of a source: train/val drawn from it, test from the second source if given."""
    images, cache_file = decoded(dataset, train_source, settings)
    shape = tuple(images.shape[1:])
    labels, classes = None, None
    if train_source.labels is not None:
        classes = sorted(set(train_source.labels.tolist()))
        labels = class_indices(train_source.labels, classes, str(train_source.path))
    everything = ArrayImages(images, labels)
    train_idx, val_idx = split(len(everything), settings.val_fraction, seed, str(train_source.path))
    test, files, provenance = None, {"data": str(train_source.path.resolve()), "cache": str(cache_file)}, train_source.provenance
    if test_source is not None:
        test_images, test_cache = decoded(dataset, test_source, settings, shape)
        test_labels = None
        if classes is not None:
            if test_source.labels is None:
                raise AvaeError(f"the training images have labels but the test images in {test_source.path} have "
                                "none; give the test set the same layout")
            test_labels = class_indices(test_source.labels, classes, str(test_source.path))
        test = ArrayImages(test_images, test_labels)
        test = test.subset(np.random.default_rng([seed, 1]).permutation(len(test)))  # random order, as val
        files |= {"test": str(test_source.path.resolve()), "test_cache": str(test_cache)}
        provenance = {**provenance, "test": test_source.provenance}
    side, channels = shape[1], shape[0]
    info = {
        "files": files,
        "source": provenance,
        "fingerprint": _digest(train_source.fingerprint, None if test_source is None else test_source.fingerprint),
        "classes": classes,
        "split": f"val = {len(val_idx)} images ({settings.val_fraction:g} of {len(everything)}) drawn at random by "
                 f"numpy default_rng({seed}) (data.split_seed), train = the other {len(train_idx)}; test = "
                 + (str(test_source.path) if test_source is not None else "none (data.options.test_root)")
                 + "; val and test in random order",
        "sizes": {"train": len(train_idx), "val": len(val_idx), "test": len(test) if test is not None else 0},
        "preprocessing": (f"{'centre square crop, ' if settings.crop else ''}brought to {side}x{side} (PIL bilinear "
                          f"resize, antialiased, where the size differs); {MODES[channels]} uint8 /255 -> [0, 1]"),
    }
    return Dataset(dataset, everything.subset(train_idx), everything.subset(val_idx), test, likelihood="gaussian",
                   value_range=(0.0, 1.0), info=info)
