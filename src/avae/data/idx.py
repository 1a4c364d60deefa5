"""MNIST and Fashion-MNIST from the official IDX files (gzipped or plain).

Images are zero-padded from 28×28 to 32×32 (2 pixels each side) and kept as uint8 (N, 1, 32, 32).
Splits follow the paper's MNIST split (see `split_sizes`); the official test file is the test split.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ..errors import AvaeError
from .base import ArrayImages, Dataset, register_dataset
from .files import USER_DATA, Download, download_missing, find_files, resolve_root, searched

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
SIDE = 28
PAD = 2
PAPER_VAL_SIZE = 10_000

FILES = {
    "train_images": ("train-images", "idx3"),
    "train_labels": ("train-labels", "idx1"),
    "test_images": ("t10k-images", "idx3"),
    "test_labels": ("t10k-labels", "idx1"),
}

HOW_TO_GET = {
    "mnist": "download the four official MNIST IDX files (train-images-idx3-ubyte.gz, "
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) "
    "into one folder and pass it with --data-root (or set AVAE_DATA_ROOT)",
    "fashion_mnist": "run 'apt-get install dataset-fashion-mnist' (installs them in "
    "/usr/share/datasets/fashion-mnist), or download the four official Fashion-MNIST IDX files "
    "into one folder and pass it with --data-root (or set AVAE_DATA_ROOT)",
}

DEFAULT_FOLDERS = {
    "mnist": [USER_DATA],
    "fashion_mnist": [Path("/usr/share/datasets/fashion-mnist"), USER_DATA],
}


def spellings(stem: str, kind: str) -> tuple[str, ...]:
    """Accepted names of one file: 'train-images-idx3-ubyte', 'train-images.idx3-ubyte', ± '.gz'."""
    names = (f"{stem}-{kind}-ubyte", f"{stem}.{kind}-ubyte")
    return tuple(n + ".gz" for n in names) + names


def read_bytes(path: Path) -> bytes:
    """File contents, gunzipped when the name ends in .gz."""
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise AvaeError(f"{path} is not a valid gzip file ({err}); re-download it") from None


def read_idx(path: Path, magic: int, what: str) -> np.ndarray:
    """Parse one IDX file of unsigned bytes (`what` they hold), checking magic, header and length."""
    data = read_bytes(path)
    if len(data) < 4:
        raise AvaeError(f"{path} is truncated: it has no IDX header; re-download it")
    found_magic = int.from_bytes(data[:4], "big")
    if found_magic != magic:
        raise AvaeError(
            f"{path} is not an IDX file of the expected kind: magic number 0x{found_magic:08x}, "
            f"expected 0x{magic:08x}; check the file name or re-download it"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise AvaeError(f"{path} is truncated: its IDX header is incomplete; re-download it")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    expected = int(np.prod(dims))
    found = len(data) - header
    if found != expected:
        problem = "is truncated" if found < expected else "has trailing bytes"
        raise AvaeError(
            f"{path} {problem}: expected {expected} bytes of {what} for shape {dims}, "
            f"found {found}; re-download it"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def read_images(path: Path) -> np.ndarray:
    """IDX images → uint8 (N, 1, 32, 32), the 28×28 digit centred in a zero border."""
    images = read_idx(path, IMAGES_MAGIC, "pixels")
    if images.shape[1:] != (SIDE, SIDE):
        raise AvaeError(
            f"{path} holds images of size {images.shape[1:]}, expected ({SIDE}, {SIDE}); "
            "use the official MNIST/Fashion-MNIST files"
        )
    padded = np.zeros((len(images), 1, SIDE + 2 * PAD, SIDE + 2 * PAD), np.uint8)
    padded[:, 0, PAD:PAD + SIDE, PAD:PAD + SIDE] = images
    return padded


def read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_images(images_path)
    labels = read_idx(labels_path, LABELS_MAGIC, "labels")
    if len(labels) != len(images):
        raise AvaeError(
            f"{labels_path} has {len(labels)} labels but {images_path} has {len(images)} images; "
            "use files from the same download"
        )
    return images, labels.astype(np.int64)


def split_sizes(n_train_file: int) -> tuple[int, int]:
    """(train, val) sizes: val is the last min(10000, n // 6) images of the training file.

    For the official 60,000 images this is the paper's split: train = first 50,000,
    val = last 10,000 (50,000–59,999). Smaller files (test fixtures) keep the same 5:1 ratio.
    """
    n_val = min(PAPER_VAL_SIZE, n_train_file // 6)
    if n_val == 0:
        raise AvaeError(
            f"the training file has only {n_train_file} images, too few to split off validation "
            "images; use the official files"
        )
    return n_train_file - n_val, n_val


def where(name: str):
    def describe(root) -> str:
        folders = resolve_root(name, root, DEFAULT_FOLDERS[name])
        try:
            found = find_files(folders, {key: spellings(*parts) for key, parts in FILES.items()}, "")
        except AvaeError:
            return f"the four IDX files; not found in {searched(folders)}"
        return f"the four IDX files; found in {next(iter(found.values())).parent}"

    return describe


def load_idx_dataset(name: str, root, download: bool) -> Dataset:
    folders = resolve_root(name, root, DEFAULT_FOLDERS[name])
    wanted = {key: spellings(*parts) for key, parts in FILES.items()}
    how = HOW_TO_GET[name] + ", or pass --set data.options.download=true when online"
    try:
        paths = find_files(folders, wanted, how)
    except AvaeError:
        if not download:
            raise
        folder = download_missing(name, root)
        paths = find_files([folder], wanted, how)
    train_images, train_labels = read_pair(paths["train_images"], paths["train_labels"])
    test_images, test_labels = read_pair(paths["test_images"], paths["test_labels"])
    n_train, n_val = split_sizes(len(train_images))
    # Slices are views: the splits share the one padded array.
    train = ArrayImages(train_images[:n_train], train_labels[:n_train])
    val = ArrayImages(train_images[n_train:], train_labels[n_train:])
    test = ArrayImages(test_images, test_labels)
    split = (
        f"train = first {n_train} of the training file, val = last {n_val} "
        f"({n_train}-{n_train + n_val - 1}), test = the official test file; "
        "rule: val = last min(10000, n // 6) training images"
    )
    info = {
        "files": {key: str(path) for key, path in paths.items()},
        "split": split,
        "sizes": {"train": n_train, "val": n_val, "test": len(test)},
        "preprocessing": "28x28 zero-padded to 32x32 (2 pixels each side); uint8 /255 -> [0, 1]",
    }
    return Dataset(name, train, val, test, likelihood="gaussian", value_range=(0.0, 1.0), info=info)


@register_dataset("mnist", where("mnist"), Download)
def load_mnist(root, seed, options: Download) -> Dataset:
    """MNIST from the official IDX files; `seed` is unused (the split is fixed).

    Option `download` (default false): fetch the four files (MD5-verified) into the data root
    (else ~/.avae/data/mnist) when they are not found.
    """
    return load_idx_dataset("mnist", root, options.download)


@register_dataset("fashion_mnist", where("fashion_mnist"), Download)
def load_fashion_mnist(root, seed, options: Download) -> Dataset:
    """Fashion-MNIST from the official IDX files; `seed` is unused (the split is fixed).

    Option `download` as for MNIST (into ~/.avae/data/fashion_mnist without a data root).
    """
    return load_idx_dataset("fashion_mnist", root, options.download)
