"""`array`: images in one NumPy file, `.npy` or `.npz`, with optional labels.

Shapes (N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1 or 3 (a 4-d shape that fits both
layouts needs the `layout` option); uint8, or floats in [0, 1] (rounded to uint8 at 255 levels).
A `.npz` holds the images under `key` (default: `images`, else its only array) and may hold
integer class labels (option `labels`: default the key `labels` when present). A `.npy` is read
memory-mapped and a `.npz` only when its cache is built; the index is the file's byte size and
modification time, the array's key, shape and dtype, and the labels' key.
"""
from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import AvaeError
from ..schema import setting
from .base import Dataset, register_dataset
from .files import given_path, named_root
from .own import TEST_ROOT, Settings, Source, load

LAYOUTS = ("auto", "nhwc", "nchw")
CHECK_CHUNK = 4096  # images per chunk when checking a float array


class ArraySource(Source):
    def __init__(self, path: Path, key: str, labels: str, layout: str, option: str = "--data-root"):
        if not path.is_file() or path.suffix.lower() not in (".npy", ".npz"):
            raise AvaeError(f"{path} is not a .npy or .npz file; give {option} the array file")
        self.path = path
        self.file = _open(path)
        if isinstance(self.file, np.ndarray):
            if labels not in ("auto", "none"):
                raise AvaeError(f"{path} holds one array, so it has no labels key {labels!r}; save images and "
                                "labels together with numpy.savez")
            self.key, self.labels_key = None, None
            shape, dtype = self.file.shape, self.file.dtype
        else:
            self.key = _images_key(self.file, key, path)
            self.labels_key = _labels_key(self.file, labels, self.key, path)
            shape, dtype = _npz_header(self.file, self.key, path)
        self.channels_last = _layout(shape, dtype, layout, path)
        self.shape = shape
        self.labels = None if self.labels_key is None else _labels(self.file, self.labels_key, shape[0], path)
        stat = path.stat()
        self.fingerprint = hashlib.sha256(repr(
            (stat.st_size, stat.st_mtime_ns, self.key, self.labels_key, tuple(shape), str(dtype))
        ).encode()).hexdigest()[:16]
        self.provenance = {"path": str(path.resolve()), "key": self.key, "labels": self.labels_key,
                           "shape": list(shape), "dtype": str(dtype), "index_sha256": self.fingerprint}
        self.images = None  # read by survey()

    def __len__(self) -> int:
        return self.shape[0]

    def survey(self) -> tuple[set[tuple[int, int]], bool]:
        images = self.file if self.key is None else _read(self.file, self.key, self.path)
        if images.dtype.kind == "f":
            _check_floats(images, self.path)
        self.images = images
        height, width = self.shape[1:3] if self.channels_last or len(self.shape) == 3 else self.shape[2:4]
        return {(width, height)}, self.channels == 1

    @property
    def channels(self) -> int:
        if len(self.shape) == 3:
            return 1
        return self.shape[3] if self.channels_last else self.shape[1]

    def image(self, i: int) -> Image.Image:
        pixels = np.asarray(self.images[i])
        if pixels.dtype.kind == "f":
            pixels = np.rint(pixels.astype(np.float64) * 255)
        pixels = pixels.astype(np.uint8)
        if pixels.ndim == 3:
            pixels = pixels if self.channels_last else pixels.transpose(1, 2, 0)
            pixels = pixels[..., 0] if pixels.shape[2] == 1 else pixels
        return Image.fromarray(pixels)


def _open(path: Path):
    try:
        return np.load(path, mmap_mode="r" if path.suffix.lower() == ".npy" else None, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise AvaeError(f"{path} is not a readable {path.suffix} file ({err}); save it with numpy.save or "
                        "numpy.savez (numeric arrays, no Python objects)") from None


def _images_key(archive, key: str | None, path: Path) -> str:
    keys = archive.files
    if key is None:
        key = "images" if "images" in keys or len(keys) != 1 else keys[0]
    if key not in keys:
        raise AvaeError(f"{path} has no array {key!r} (it has {', '.join(keys)}); pass --set data.options.key=NAME")
    return key


def _labels_key(archive, labels: str, images_key: str, path: Path) -> str | None:
    if labels == "none" or (labels == "auto" and ("labels" not in archive.files or images_key == "labels")):
        return None
    key = "labels" if labels == "auto" else labels
    if key not in archive.files:
        raise AvaeError(f"{path} has no array {key!r} (it has {', '.join(archive.files)}); set the dataset "
                        "option labels to one of them, or none")
    return key


def _npz_header(archive, key: str, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one array of an .npz without decompressing it."""
    try:
        with archive.zip.open(f"{key}.npy") as member:
            version = np.lib.format.read_magic(member)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(member)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise AvaeError(f"array {key!r} of {path} cannot be read ({err}); save the file again") from None
    return shape, dtype


def _read(archive, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise AvaeError(f"array {key!r} of {path} cannot be read ({err}); save the file again") from None


def _layout(shape, dtype: np.dtype, layout: str, path: Path) -> bool:
    """Whether the channels are last; checks rank, channels and dtype."""
    if dtype != np.uint8 and dtype.kind != "f":
        raise AvaeError(f"{path} holds {dtype} values; save the images as uint8 (0-255) or as floats in [0, 1]")
    if len(shape) == 3:
        return False
    if len(shape) != 4:
        raise AvaeError(f"{path} holds an array of shape {tuple(shape)}; give images as (N, H, W), (N, H, W, C) "
                        "or (N, C, H, W) with C = 1 or 3")
    last, first = shape[3] in (1, 3), shape[1] in (1, 3)
    if layout == "auto":
        if last == first:
            what = "fits both" if last else "has no axis of 1 or 3 channels for"
            raise AvaeError(f"{path} holds an array of shape {tuple(shape)}, which {what} (N, H, W, C) and "
                            "(N, C, H, W) with C = 1 or 3; pass --set data.options.layout=nhwc or nchw")
        return last
    if not (last if layout == "nhwc" else first):
        raise AvaeError(f"{path} holds an array of shape {tuple(shape)}, not {layout} with 1 or 3 channels")
    return layout == "nhwc"


def _labels(archive, key: str, n: int, path: Path) -> np.ndarray:
    labels = _read(archive, key, path)
    if labels.shape != (n,) or labels.dtype.kind not in "iub":
        raise AvaeError(f"labels {key!r} of {path} must be {n} integers (one per image), got {labels.dtype} "
                        f"of shape {labels.shape}")
    if len(np.unique(labels)) < 2:
        raise AvaeError(f"labels {key!r} of {path} hold a single class; give at least two, or set labels: none")
    return labels.astype(np.int64)


def _check_floats(images: np.ndarray, path: Path) -> None:
    for start in range(0, len(images), CHECK_CHUNK):
        chunk = np.asarray(images[start : start + CHECK_CHUNK])
        bad = ~np.isfinite(chunk) | (chunk < 0) | (chunk > 1)
        if bad.any():
            i = start + int(np.argmax(bad.reshape(len(chunk), -1).any(1)))
            value = chunk[i - start][bad[i - start]].flat[0]
            raise AvaeError(f"{path}: image {i} holds the value {value}; float images must be finite and in "
                            "[0, 1] (no NaN)")


@dataclass(frozen=True)
class ArrayOptions(Settings):
    """data.options of an array file; see docs/datasets.md, "Your own images". `labels`: auto, none or the labels' key."""

    key: str | None = setting(None)  # the images' array in an .npz (None: `images`, else its only array)
    layout: str = setting("auto", choices=LAYOUTS)  # nhwc or nchw; auto: from where the 1 or 3 channels are


@register_dataset("array", lambda root: f"your .npy/.npz file: {named_root(root) or '--data-root FILE'}", ArrayOptions)
def load_array(root, seed, options: ArrayOptions) -> Dataset:
    """Images in a .npy or .npz file; see docs/datasets.md, "Your own images" for the options."""
    root = named_root(root)
    if root is None:
        raise AvaeError("dataset 'array' needs an array file: pass --data-root FILE.npy|FILE.npz (or set AVAE_DATA_ROOT)")
    train = ArraySource(root, options.key, options.labels, options.layout)
    test_root = given_path(options.test_root, TEST_ROOT)
    test = (ArraySource(test_root, options.key, options.labels, options.layout, TEST_ROOT)
            if test_root is not None else None)
    return load("array", train, test, options, seed)
