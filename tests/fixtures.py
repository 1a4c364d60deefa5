"""Small datasets written in the official file formats, for tests."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def idx_bytes(array: np.ndarray) -> bytes:
    """An array of unsigned bytes in the official IDX layout."""
    magic = (0x08 << 8) | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def blobs(n: int, rng: np.random.Generator, size: int = 28) -> np.ndarray:
    """Digit-like uint8 images: one or two Gaussian blobs each, so an autoencoder has something to learn."""
    yy, xx = np.mgrid[:size, :size]
    images = np.zeros((n, size, size))
    for k in range(2):
        cy, cx = rng.uniform(6, size - 6, (2, n, 1, 1))
        r = rng.uniform(2, 5, (n, 1, 1))
        on = (rng.random((n, 1, 1)) < 0.5) if k else 1.0
        images += on * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    return (255 * np.clip(images, 0, 1)).astype(np.uint8)


def write_mnist(folder: Path, n_train: int = 120, n_test: int = 20, gz: bool = True, seed: int = 0) -> dict:
    """The four MNIST IDX files (gzipped or not) in `folder`; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": blobs(n_train, rng),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": blobs(n_test, rng),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        data = idx_bytes(array)
        path = folder / (name + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(data) if gz else data)
    return arrays
