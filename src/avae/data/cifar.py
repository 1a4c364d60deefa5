"""CIFAR-10 from the official python batches (`cifar-10-python.tar.gz`, or its extracted folder).

Each batch is a pickled dict with b'data' (10000 × 3072 uint8: the 1024 red, then green, then blue
pixels of a 32×32 image, row-major) and b'labels'. The archive is read in memory with `tarfile`
(nothing is extracted to disk) and every batch is unpickled by a restricted unpickler that only
builds numpy arrays and plain Python values, so a tampered file cannot run code.

Split as the paper: train = the first 40,000 images of data_batch_1..5, val = the last 10,000,
test = the official test_batch. Images stay uint8 (N, 3, 32, 32); the model sees /255 → [0, 1].
"""
from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import AvaeError
from .base import ArrayImages, Dataset, register_dataset
from .files import USER_DATA, Download, download_missing, resolve_root, searched

ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
SIDE = 32
PIXELS = 3 * SIDE * SIDE
PAPER_VAL_SIZE = 10_000
HOW_TO_GET = (
    f"download {ARCHIVE} (the 'CIFAR-10 python version') from https://www.cs.toronto.edu/~kriz/cifar.html "
    f"into the data root (the archive, or its extracted folder {FOLDER}/), pass it with --data-root "
    "(or set AVAE_DATA_ROOT), or pass --set data.options.download=true when online"
)


def _numpy_reconstruct():
    core = getattr(np, "_core", None) or np.core  # numpy ≥ 2 moved numpy.core to numpy._core
    return core.multiarray._reconstruct


def _latin1_encode(text, encoding="latin1"):
    """`_codecs.encode` as protocol-2 pickles of bytes use it, limited to that one use."""
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError("_codecs.encode is allowed only for latin-1 byte strings")
    return text.encode("latin1")


class SafeUnpickler(pickle.Unpickler):
    """Builds only numpy arrays/dtypes and plain containers; any other global is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        ("_codecs", "encode"): lambda: _latin1_encode,
    }

    def find_class(self, module, name):
        make = self.ALLOWED.get((module, name))
        if make is None:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a CIFAR batch")
        return make()


def read_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch → images uint8 (n, 3, 32, 32) and labels int64 (n,)."""
    try:
        batch = SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as err:  # pickle raises many kinds on damaged input
        raise AvaeError(f"{where} is not a readable CIFAR-10 python batch ({type(err).__name__}: {err}); "
                        f"re-download {ARCHIVE}") from None
    if not isinstance(batch, dict):
        raise AvaeError(f"{where} is not a CIFAR-10 python batch (it holds a {type(batch).__name__}, not a dict)")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    for key in ("data", "labels"):
        if key not in batch:
            raise AvaeError(f"{where} has no '{key}' entry; it is not a CIFAR-10 python batch, re-download {ARCHIVE}")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        shape = getattr(data, "shape", None)
        raise AvaeError(f"{where}: 'data' is {type(data).__name__} {getattr(data, 'dtype', '')} of shape {shape}, "
                        f"expected uint8 (n, {PIXELS}); re-download {ARCHIVE}")
    labels = np.asarray(batch["labels"])
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu" or (len(labels) and not (
            labels.min() >= 0 and labels.max() <= 9)):
        raise AvaeError(f"{where}: 'labels' must be {len(data)} integers in 0..9, got {labels.dtype} "
                        f"of shape {labels.shape}; re-download {ARCHIVE}")
    return data.reshape(-1, 3, SIDE, SIDE), labels.astype(np.int64)


def read_folder(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    batches = {}
    for name in TRAIN_BATCHES + (TEST_BATCH,):
        path = folder / name
        if not path.is_file():
            raise AvaeError(f"{folder} holds some CIFAR-10 batches but not {name}; the folder needs "
                            f"data_batch_1..5 and test_batch: copy it again from {ARCHIVE}")
        try:
            raw = path.read_bytes()
        except OSError as err:
            raise AvaeError(f"cannot read {path} ({err}); {HOW_TO_GET}") from None
        batches[name] = read_batch(raw, str(path))
    return batches


def read_archive(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The six batches of the official tar.gz, read in memory (members may sit in any folder)."""
    batches = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            missing = [name for name in TRAIN_BATCHES + (TEST_BATCH,) if name not in members]
            if missing:
                raise AvaeError(f"{path} has no member {FOLDER}/{missing[0]}; it is not the official "
                                f"CIFAR-10 python archive, re-download it")
            for name in TRAIN_BATCHES + (TEST_BATCH,):
                raw = tar.extractfile(members[name]).read()
                batches[name] = read_batch(raw, f"{path} (member {members[name].name})")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise AvaeError(f"{path} is not a readable .tar.gz archive ({type(err).__name__}: {err}); "
                        "it is truncated or corrupt, re-download it") from None
    return batches


def locate(folders: list[Path]) -> Path | None:
    """The first folder of extracted batches (complete or not: a gap is reported), or archive, in the search order."""
    for folder in folders:
        for candidate in (folder / FOLDER, folder):
            if any((candidate / name).is_file() for name in TRAIN_BATCHES + (TEST_BATCH,)):
                return candidate
        if (folder / ARCHIVE).is_file():
            return folder / ARCHIVE
    return None


def split_sizes(n: int) -> tuple[int, int]:
    """(train, val): val = the last min(10000, n // 5) training images (40,000 / 10,000 for the official set)."""
    n_val = min(PAPER_VAL_SIZE, n // 5)
    if n_val == 0:
        raise AvaeError(f"the CIFAR-10 training batches hold only {n} images, too few to split; use the official files")
    return n - n_val, n_val


def where(root) -> str:
    folders = resolve_root("cifar10", root, [USER_DATA])
    found = locate(folders)
    return f"{ARCHIVE} or {FOLDER}/; " + (f"found: {found}" if found else f"not found in {searched(folders)}")


@register_dataset("cifar10", where, Download)
def load_cifar10(root, seed, options: Download) -> Dataset:
    """CIFAR-10 from the official python batches; `seed` is unused (the split is fixed).

    Option `download` (default false): fetch cifar-10-python.tar.gz (MD5-verified) into the data
    root (else ~/.avae/data/cifar10) when no copy is found.
    """
    download = options.download
    folders = resolve_root("cifar10", root, [USER_DATA])
    source = locate(folders)
    if source is None and download:
        source = locate([download_missing("cifar10", root)])
    if source is None:
        raise AvaeError(f"file {ARCHIVE} (or folder {FOLDER}/) not found in {searched(folders)}; {HOW_TO_GET}")
    batches = read_archive(source) if source.is_file() else read_folder(source)
    sizes = {name: len(batches[name][0]) for name in TRAIN_BATCHES}
    images = np.concatenate([batches[name][0] for name in TRAIN_BATCHES])
    labels = np.concatenate([batches[name][1] for name in TRAIN_BATCHES])
    n_train, n_val = split_sizes(len(images))
    test_images, test_labels = batches[TEST_BATCH]
    info = {
        "files": {"batches": str(source)},
        "split": f"train = first {n_train} of data_batch_1..5 in order, val = last {n_val} "
                 f"({n_train}-{n_train + n_val - 1}), test = the official test_batch; "
                 "rule: val = last min(10000, n // 5) training images",
        "sizes": {"train": n_train, "val": n_val, "test": len(test_images)},
        "batch_sizes": sizes,
        "preprocessing": "none: uint8 RGB 32x32; /255 -> [0, 1]",
    }
    return Dataset(
        "cifar10",
        ArrayImages(images[:n_train], labels[:n_train]),
        ArrayImages(images[n_train:], labels[n_train:]),
        ArrayImages(np.ascontiguousarray(test_images), test_labels),
        likelihood="gaussian", value_range=(0.0, 1.0), info=info,
    )
