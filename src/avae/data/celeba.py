"""CelebA from the official aligned images and partition file.

Files: `img_align_celeba/` (202,599 JPEGs of 178×218, named 000001.jpg ...) or `img_align_celeba.zip`,
and `list_eval_partition.txt` (lines "000001.jpg 0": 0 train, 1 val, 2 test). The layout of the
official download (`Img/img_align_celeba.zip`, `Eval/list_eval_partition.txt`) is accepted too.

Preprocessing (the RAE/WAE convention the paper follows; the paper's own file is pre-made):
the centred 140×140 crop (left 19, top 39 for 178×218 images) resized to 64×64 by Pillow's
bilinear filter (antialiased when shrinking). The model sees [−1, 1] (uint8 /255 → 2x − 1).

Decoding 200k JPEGs every epoch is too slow, so the first use writes a uint8 cache (N, 3, 64, 64)
`celeba_64x64_<key>.npy` next to the partition file (or under $AVAE_CACHE_DIR/celeba when that
folder is read-only), atomically and with a progress bar, and then opens it memory-mapped. The key
hashes the image list (names and byte sizes) and the preprocessing, so a changed folder is rebuilt.

Splits: the official partitions (162,770 / 19,867 / 19,962 images). The paper truncates train and
val to multiples of 100 (162,700 and 19,800); `run.load_data`'s train_size/val_size can do the same.
"""
from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import AvaeError
from . import cache
from .base import ArrayImages, Dataset, register_dataset
from .files import USER_DATA, cache_root, resolve_root, searched

PARTITION = "list_eval_partition.txt"
IMAGE_FOLDER = "img_align_celeba"
IMAGE_ZIP = "img_align_celeba.zip"
CROP = 140
SIDE = 64
CACHE_VERSION = 1
PREPROCESSING = f"centre crop {CROP}x{CROP}, resized to {SIDE}x{SIDE} by PIL bilinear (antialiased); RGB uint8"
HOW_TO_GET = (
    f"download the aligned-and-cropped images ({IMAGE_ZIP}, or the extracted {IMAGE_FOLDER}/ folder) and "
    f"{PARTITION} from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html into one folder and pass it with "
    "--data-root (or set AVAE_DATA_ROOT)"
)
SPLITS = {"0": "train", "1": "val", "2": "test"}


def read_partition(path: Path) -> tuple[list[str], np.ndarray]:
    """Image names and their partitions (0, 1, 2) in file order; any malformed line is an error."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as err:
        raise AvaeError(f"cannot read {path} ({err}); {HOW_TO_GET}") from None
    names, parts = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or fields[1] not in SPLITS or not fields[0].lower().endswith((".jpg", ".png")):
            raise AvaeError(f"{path} line {number} is {line.strip()[:60]!r}, expected '<image>.jpg <0|1|2>'; "
                            "re-download it")
        names.append(fields[0])
        parts.append(int(fields[1]))
    if not names:
        raise AvaeError(f"{path} lists no images; re-download it")
    if len(set(names)) != len(names):
        raise AvaeError(f"{path} lists an image twice; re-download it")
    return names, np.array(parts, np.int8)


class ImageSource:
    """The JPEGs named in the partition file, in a folder or a zip archive."""

    def __init__(self, path: Path, names: list[str]):
        self.path, self.names = path, names
        self.local = threading.local()
        if path.is_dir():
            self.members = None
            sizes = []
            for name in names:
                try:
                    sizes.append((path / name).stat().st_size)
                except OSError:
                    raise AvaeError(f"image {name} (listed in {PARTITION}) not found in {path}; {HOW_TO_GET}") from None
        else:
            try:
                with zipfile.ZipFile(path) as archive:
                    infos = {Path(i.filename).name: i for i in archive.infolist() if not i.is_dir()}
            except (zipfile.BadZipFile, OSError) as err:
                raise AvaeError(f"{path} is not a readable zip archive ({err}); re-download it") from None
            missing = [name for name in names if name not in infos]
            if missing:
                raise AvaeError(f"image {missing[0]} (listed in {PARTITION}) is not in {path} "
                                f"({len(missing)} missing); {HOW_TO_GET}")
            self.members = [infos[name].filename for name in names]
            sizes = [(infos[name].file_size, infos[name].CRC) for name in names]
        self.key = self._key(sizes)

    def _key(self, sizes) -> str:
        digest = hashlib.sha256(f"v{CACHE_VERSION}|{PREPROCESSING}".encode())
        for name, size in zip(self.names, sizes):
            digest.update(f"|{name}:{size}".encode())
        return digest.hexdigest()[:16]

    def where(self, i: int) -> str:
        return str(self.path / self.names[i]) if self.members is None else f"{self.path} (member {self.members[i]})"

    def read(self, i: int) -> bytes:
        if self.members is None:
            return (self.path / self.names[i]).read_bytes()
        archive = getattr(self.local, "archive", None)
        if archive is None:  # one handle per worker thread
            archive = self.local.archive = zipfile.ZipFile(self.path)
        return archive.read(self.members[i])


def preprocess(image: Image.Image) -> np.ndarray:
    """The centred 140×140 crop resized to 64×64 → uint8 (3, 64, 64)."""
    width, height = image.size
    left, top = (width - CROP) // 2, (height - CROP) // 2
    crop = image.convert("RGB").crop((left, top, left + CROP, top + CROP))  # nothing outside it is used
    small = crop.resize((SIDE, SIDE), Image.BILINEAR)
    return np.asarray(small, np.uint8).transpose(2, 0, 1)


def decode(source: ImageSource, i: int) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(source.read(i))) as image:
            if min(image.size) < CROP:
                raise AvaeError(f"{source.where(i)} is {image.size[0]}x{image.size[1]} pixels, smaller than the "
                                f"{CROP}x{CROP} crop; use the aligned CelebA images ({IMAGE_FOLDER})")
            return preprocess(image)
    except AvaeError:
        raise
    except Exception as err:  # Pillow and zipfile raise many kinds for a damaged image
        raise AvaeError(f"{source.where(i)} is not a readable image ({type(err).__name__}: {err}); "
                        "re-download the CelebA images") from None


def cached_images(source: ImageSource, data_folder: Path) -> tuple[np.ndarray, Path]:
    """The uint8 cache (N, 3, 64, 64): next to the data first, else in $AVAE_CACHE_DIR/celeba."""
    return cache.cached_images(
        f"celeba_{SIDE}x{SIDE}_{source.key}.npy", len(source.names), [data_folder, cache_root() / "celeba"],
        lambda: ((3, SIDE, SIDE), lambda i: decode(source, i)), "CelebA", stale=f"celeba_{SIDE}x{SIDE}_*.npy",
    )


def locate(folders: list[Path]) -> tuple[Path, Path]:
    """(partition file, image folder or zip) found together in one folder of the search order."""
    for folder in folders:
        for partition in (folder / PARTITION, folder / "Eval" / PARTITION):
            if not partition.is_file():
                continue
            for images in (folder / IMAGE_FOLDER, folder / "Img" / IMAGE_FOLDER, folder / IMAGE_ZIP,
                           folder / "Img" / IMAGE_ZIP):
                if images.is_dir() or images.is_file():
                    return partition, images
            raise AvaeError(f"{partition} was found but neither {IMAGE_FOLDER}/ nor {IMAGE_ZIP} is next to it "
                            f"in {folder}; {HOW_TO_GET}")
    raise AvaeError(f"file {PARTITION} not found in {searched(folders)}; {HOW_TO_GET}")


def where(root) -> str:
    folders = resolve_root("celeba", root, [USER_DATA])
    try:
        partition, images = locate(folders)
    except AvaeError:
        return f"{PARTITION} and {IMAGE_FOLDER}/ or {IMAGE_ZIP}; not found in {searched(folders)}"
    return f"{PARTITION} and {IMAGE_FOLDER}/ or {IMAGE_ZIP}; found: {partition}, {images}"


@register_dataset("celeba", where)
def load_celeba(root, seed, options) -> Dataset:
    """CelebA, 64×64 RGB in [−1, 1], official train/val/test partitions; `seed` is unused."""
    partition, image_path = locate(resolve_root("celeba", root, [USER_DATA]))
    names, parts = read_partition(partition)
    source = ImageSource(image_path, names)
    array, cache_file = cached_images(source, partition.parent)
    images = ArrayImages(array)
    splits = [np.flatnonzero(parts == p) for p in range(3)]
    if not len(splits[0]) or not len(splits[1]):
        raise AvaeError(f"{partition} has no {'train' if not len(splits[0]) else 'val'} images; re-download it")
    info = {
        "files": {"partition": str(partition), "images": str(image_path), "cache": str(cache_file)},
        "split": "the official partitions of list_eval_partition.txt (0 train, 1 val, 2 test), in file order "
                 "(the paper truncates train/val to multiples of 100: 162,700 / 19,800)",
        "sizes": {"train": len(splits[0]), "val": len(splits[1]), "test": len(splits[2])},
        "preprocessing": PREPROCESSING + "; /255 then 2x-1 -> [-1, 1]",
    }
    test = images.subset(splits[2]) if len(splits[2]) else None
    return Dataset("celeba", images.subset(splits[0]), images.subset(splits[1]), test,
                   likelihood="gaussian", value_range=(-1.0, 1.0), info=info)
