"""`images`: a folder of image files (PNG, JPEG and the other formats Pillow reads), any depth of subfolders.

The index is every image file under the folder (hidden files and folders skipped; linked folders
followed, but no real folder or file taken twice), sorted by relative path; its fingerprint
hashes each file's relative path, byte size and modification time, so a copy that keeps
modification times (`cp -a`, `rsync -a`) is the same data. When every image lies in a
first-level subfolder and there are at least two of them, as torchvision's ImageFolder expects,
the subfolder names are the labels (classes sorted by name).
16-bit greyscale images are scaled to 8 bits; an alpha channel is dropped.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import AvaeError
from ..schema import setting
from .base import Dataset, register_dataset
from .files import given_path, named_root
from .own import TEST_ROOT, Settings, Source, load

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B"}
WIDE_MODES = {"I", "I;16", "I;16L", "I;16B"}  # 16-bit greyscale, scaled to 8 bits
LABELS = ("auto", "folders", "none")


class FolderSource(Source):
    def __init__(self, root: Path, labels: str, min_classes: int = 2, option: str = "--data-root"):
        if not root.is_dir():
            raise AvaeError(f"{root} is not a folder; give {option} a folder of images (PNG, JPEG, ...)")
        self.path = root
        stats = _image_files(root)
        self.files = list(stats)
        if not self.files:
            raise AvaeError(f"no image files ({', '.join(EXTENSIONS)}) in {root} or its subfolders; "
                            f"give {option} the folder that holds them")
        digest = hashlib.sha256()
        for name, stat in stats.items():
            digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
        self.fingerprint = digest.hexdigest()[:16]
        self.labels = _folder_labels(self.files, labels, root, min_classes)
        self.provenance = {"path": str(root.resolve()), "files": len(self.files), "index_sha256": self.fingerprint}

    def __len__(self) -> int:
        return len(self.files)

    def _open(self, i: int) -> Image.Image:
        path = self.path / self.files[i]
        try:
            return Image.open(path)
        except Exception as err:  # Pillow raises many kinds for a file it cannot read
            raise AvaeError(f"{path} is not a readable image ({type(err).__name__}); remove or replace it") from None

    def survey(self) -> tuple[set[tuple[int, int]], bool]:
        def header(i):
            with self._open(i) as image:
                if image.mode == "F":
                    raise AvaeError(f"{self.path / self.files[i]} holds floating-point pixels; save it as an "
                                    "8-bit or 16-bit image")
                return image.size, image.mode in GREY_MODES

        with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
            found = list(pool.map(header, range(len(self.files))))
        return {size for size, _ in found}, all(grey for _, grey in found)

    def image(self, i: int) -> Image.Image:
        with self._open(i) as image:
            try:
                image.load()
            except Exception as err:
                raise AvaeError(f"{self.path / self.files[i]} is a damaged image ({type(err).__name__}: {err}); "
                                "remove or replace it") from None
            if image.mode in WIDE_MODES:
                return Image.fromarray((np.asarray(image, np.float64) / 257).round().clip(0, 255).astype(np.uint8))
            return image


def _image_files(root: Path) -> dict[str, os.stat_result]:
    """{relative path: stat} of the image files under `root`, sorted by path.

    Linked folders are followed, but each real folder is walked once and each real file indexed
    once (at its first path in sorted order): a link to an ancestor would otherwise repeat the
    images without end, and a repeated image lets validation overlap training.
    """
    walked, found = {_identity(root, os.stat(root))}, []
    for folder, subfolders, names in os.walk(root, followlinks=True):
        subfolders[:] = [s for s in sorted(subfolders) if not s.startswith(".") and _first(Path(folder) / s, walked)]
        found += [Path(folder) / n for n in names if not n.startswith(".") and n.lower().endswith(EXTENSIONS)]
    stats, indexed = {}, set()
    for name, path in sorted((path.relative_to(root).as_posix(), path) for path in found):
        stat = _stat(path)
        if _identity(path, stat) not in indexed:
            indexed.add(_identity(path, stat))
            stats[name] = stat
    return stats


def _identity(path: Path, stat: os.stat_result):
    """What names one real file or folder: its device and inode, else (a file system without
    inode numbers) its resolved path."""
    return (stat.st_dev, stat.st_ino) if stat.st_ino else os.path.realpath(path)


def _first(folder: Path, walked: set) -> bool:
    """Whether the real folder behind `folder` is not walked yet (and now is)."""
    try:
        real = _identity(folder, os.stat(folder))
    except OSError:  # gone or unreadable since it was listed: os.walk skips it too
        return False
    if real in walked:
        return False
    walked.add(real)
    return True


def _stat(path: Path) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as err:
        if path.is_symlink():
            raise AvaeError(f"{path} is a broken link (to {os.readlink(path)}: {err.strerror}); remove it or "
                            "point it at an image") from None
        raise AvaeError(f"{path} cannot be read ({err.strerror}); remove it or make it readable") from None


def _folder_labels(files: list[str], mode: str, root: Path, min_classes: int) -> np.ndarray | None:
    """The first-level subfolder of each image, when the folder is laid out one subfolder per class
    (a test folder may hold fewer classes than the `min_classes` of a training folder)."""
    if mode == "none":
        return None
    classes = [name.split("/")[0] if "/" in name else None for name in files]
    kinds = set(classes)
    if None not in kinds and len(kinds) >= min_classes:
        return np.array(classes)
    if mode == "folders":
        loose = next((name for name in files if "/" not in name), None)
        problem = f"{root / loose} lies outside any class subfolder" if loose else "there is only one class subfolder"
        raise AvaeError(f"labels: folders needs one subfolder per class (at least two) in {root}, but {problem}")
    return None


@dataclass(frozen=True)
class ImagesOptions(Settings):
    """data.options of a folder of images; see docs/datasets.md, "Your own images"."""

    labels: str = setting("auto", choices=LABELS)  # auto: the class subfolders where the folder has them; folders; none


@register_dataset("images", lambda root: f"your folder of images: {named_root(root) or '--data-root DIR'}",
                  ImagesOptions)
def load_images(root, seed, options: ImagesOptions) -> Dataset:
    """A folder of images; see docs/datasets.md, "Your own images" for the options."""
    root = named_root(root)
    if root is None:
        raise AvaeError("dataset 'images' needs a folder of images: pass --data-root DIR (or set AVAE_DATA_ROOT)")
    train = FolderSource(root, options.labels)
    test_root = given_path(options.test_root, TEST_ROOT)
    test = FolderSource(test_root, options.labels, 1, TEST_ROOT) if test_root is not None else None
    return load("images", train, test, options, seed)
