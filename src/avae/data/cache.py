"""The uint8 image cache: decoded once into an .npy file (N, C, H, W), then read memory-mapped.

A cache's file name carries a key that hashes its source and its preprocessing, so a changed
source gets a new file. It is written atomically (a temporary file renamed at the end) with a
progress bar, by threads (Pillow and NumPy decode without the GIL), in the first folder of a
search order that can be written to.
"""
from __future__ import annotations

import errno
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from ..atomic import save_file
from ..errors import AvaeError

CHUNK = 256  # images per worker task while building a cache

Decode = Callable[[int], np.ndarray]  # image i → uint8 (C, H, W)


def build_cache(target: Path, shape: tuple[int, ...], decode: Decode, description: str) -> None:
    """Decode every image into `target` (.npy), atomically; the first error stops every worker."""
    from tqdm import tqdm

    n = shape[0]
    target.parent.mkdir(parents=True, exist_ok=True)

    def fill(tmp: Path) -> None:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)

        def work(start: int) -> int:
            stop = min(start + CHUNK, n)
            for i in range(start, stop):
                out[i] = decode(i)
            return stop - start

        pool = ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1)))
        try:
            with tqdm(total=n, desc=description, unit="img", disable=None, leave=False) as bar:
                for done in pool.map(work, range(0, n, CHUNK)):
                    bar.update(done)
        finally:
            pool.shutdown(cancel_futures=True)  # after a bad image, stop at once
        out.flush()  # all bytes on disk before the rename makes the cache visible

    save_file(fill, target)


def open_cache(path: Path, n: int) -> np.ndarray | None:
    """The memory-mapped cache, or None when it is absent or not n uint8 images."""
    if not path.is_file():
        return None
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    return array if array.ndim == 4 and len(array) == n and array.dtype == np.uint8 else None


def writable(folder: Path) -> bool:
    """Whether a file can be created in `folder` (or in the nearest existing folder above it)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return os.access(folder, os.W_OK)


def cached_images(name: str, n: int, folders: list[Path], plan: Callable[[], tuple[tuple[int, int, int], Decode]],
                  what: str, stale: str | None = None) -> tuple[np.ndarray, Path]:
    """The cache `name` of n images: found in `folders` (in order), else built in the first writable one.

    `plan()` is called only to build: it returns the image shape (C, H, W) and the decoder.
    `stale` is a glob of older caches of the same source that a new cache replaces in the first folder.
    """
    for folder in folders:
        array = open_cache(folder / name, n)
        if array is not None:
            return array, folder / name
    shape, decode = plan()
    for folder in folders:
        if not writable(folder):
            continue  # a read-only data folder: fall back to the next one
        try:
            build_cache(folder / name, (n, *shape), decode, f"{what}: building the {shape[1]}x{shape[2]} cache")
        except OSError as err:
            if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                continue
            size = n * int(np.prod(shape)) / 1e9
            raise AvaeError(f"cannot write the {what} cache {folder / name} ({err}); set AVAE_CACHE_DIR "
                            f"to a writable folder with {size:.2g} GB free") from None
        if stale and folder == folders[0]:
            for old in folder.glob(stale):
                if old.name != name:
                    old.unlink(missing_ok=True)  # built from an older file list or preprocessing
        array = open_cache(folder / name, n)
        if array is None:
            raise AvaeError(f"the {what} cache {folder / name} could not be read back after writing it")
        return array, folder / name
    raise AvaeError(f"no writable folder for the {what} cache (tried {', '.join(map(str, folders))}); "
                    "set AVAE_CACHE_DIR to a writable folder")
