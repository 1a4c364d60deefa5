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


# ---------------------------------------------------------------- CIFAR-10 python batches

CIFAR_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def cifar_batch_bytes(data: np.ndarray, labels, name: str = "training batch") -> bytes:
    """One batch as the official files hold it: a pickled dict with byte-string keys (protocol 2)."""
    import pickle

    batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in labels], b"data": data,
             b"filenames": [f"img_{i}.png".encode() for i in range(len(data))]}
    return pickle.dumps(batch, protocol=2)


def cifar_images(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3072) uint8 rows, as in the official files: the red, green, blue 32×32 planes in turn."""
    planes = np.stack([blobs(n, rng, 32) for _ in range(3)], axis=1)  # (n, 3, 32, 32)
    return planes.reshape(n, 3072)


def write_cifar10(folder: Path, n_per_batch: int = 20, archive: bool = True, seed: int = 0) -> dict:
    """The six python batches, as `cifar-10-python.tar.gz` or an extracted `cifar-10-batches-py/`.

    Returns {batch name: (data (n, 3072) uint8, labels (n,) int64)}.
    """
    import io
    import tarfile

    rng = np.random.default_rng(seed)
    arrays = {name: (cifar_images(n_per_batch, rng), rng.integers(0, 10, n_per_batch)) for name in CIFAR_BATCHES}
    files = {f"cifar-10-batches-py/{name}": cifar_batch_bytes(*arrays[name], name) for name in CIFAR_BATCHES}
    files["cifar-10-batches-py/batches.meta"] = b"not read"
    folder.mkdir(parents=True, exist_ok=True)
    if archive:
        with tarfile.open(folder / "cifar-10-python.tar.gz", "w:gz") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    else:
        for name, data in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
    return arrays


# ---------------------------------------------------------------- CelebA folder / zip + partition

CELEBA_SIZE = (178, 218)  # width, height of the official aligned images
CELEBA_CROP_BOX = (19, 39, 159, 179)  # the centred 140×140 crop


def celeba_image(rng: np.random.Generator):
    """A 178×218 RGB picture: pure red outside the central 140×140 crop, a random smooth face-ish
    pattern with no red inside it, so a wrong crop shows up as red pixels."""
    from PIL import Image

    width, height = CELEBA_SIZE
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[..., 0] = 255
    left, top, right, bottom = CELEBA_CROP_BOX
    inside = np.zeros((bottom - top, right - left, 3), np.uint8)
    inside[..., 1] = blobs(1, rng, 140)[0] // 2 + 100
    inside[..., 2] = int(rng.integers(60, 200))
    pixels[top:bottom, left:right] = inside
    return Image.fromarray(pixels)


def write_celeba(folder: Path, parts=(0,) * 12 + (1,) * 4 + (2,) * 4, archive: bool = False, seed: int = 0) -> list[str]:
    """`img_align_celeba/` (or `img_align_celeba.zip`) with one JPEG per entry of `parts`, and
    `list_eval_partition.txt`; returns the image names in partition-file order."""
    import io
    import zipfile

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{i + 1:06d}.jpg" for i in range(len(parts))]
    encoded = []
    for _ in names:
        buffer = io.BytesIO()
        celeba_image(rng).save(buffer, "JPEG", quality=100, subsampling=0)  # little colour bleeding
        encoded.append(buffer.getvalue())
    if archive:
        with zipfile.ZipFile(folder / "img_align_celeba.zip", "w") as z:
            for name, data in zip(names, encoded):
                z.writestr(f"img_align_celeba/{name}", data)
    else:
        (folder / "img_align_celeba").mkdir(exist_ok=True)
        for name, data in zip(names, encoded):
            (folder / "img_align_celeba" / name).write_bytes(data)
    (folder / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(names, parts)))
    return names


# ---------------------------------------------------------------- dSprites .npz / 3D Shapes .h5

DSPRITES_NPZ = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"


def write_dsprites_npz(path: Path, factor_sizes=(3, 1, 1, 2, 2), seed: int = 0) -> np.ndarray:
    """An .npz with the official keys and layout (colour first, row-major) on a reduced grid.

    Returns the binary images (n, 64, 64) written.
    """
    n = int(np.prod(factor_sizes))
    classes = np.stack(np.unravel_index(np.arange(n), (1, *factor_sizes)), axis=1).astype(np.int64)
    imgs = np.random.default_rng(seed).integers(0, 2, (n, 64, 64), dtype=np.uint8)
    np.savez_compressed(path, imgs=imgs, latents_classes=classes, latents_values=classes.astype(np.float64))
    return imgs


def shapes3d_values(factor_sizes) -> np.ndarray:
    """Official label values (n, 6) of the row-major grid `factor_sizes` (a prefix of each official grid)."""
    grids = (np.linspace(0, 0.9, 10),) * 3 + (np.linspace(0.75, 1.25, 8), np.arange(4.0), np.linspace(-30, 30, 15))
    classes = np.unravel_index(np.arange(int(np.prod(factor_sizes))), factor_sizes)
    return np.stack([grid[c] for grid, c in zip(grids, classes)], axis=1)


def write_shapes3d_h5(path: Path, factor_sizes=(2, 1, 2, 1, 4, 3), seed: int = 0, labels=None) -> np.ndarray:
    """A 3dshapes.h5 with the official dataset names, dtypes and layout on a reduced grid.

    Returns the images (n, 64, 64, 3) written.
    """
    import h5py

    values = shapes3d_values(factor_sizes) if labels is None else labels
    images = np.random.default_rng(seed).integers(0, 256, (len(values), 64, 64, 3), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, chunks=(1, 64, 64, 3))
        f.create_dataset("labels", data=values.astype(np.float64))
    return images


# ---------------------------------------------------------------- your own images: folders and arrays

def pictures(n: int, width: int, height: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    """(n, height, width, channels) uint8: blobs, each channel a different brightness of them."""
    side = max(width, height)
    grey = blobs(n, rng, side)[:, :height, :width].astype(np.float64)
    gains = rng.uniform(0.3, 1.0, (n, 1, 1, channels))
    return (grey[..., None] * gains).round().astype(np.uint8)


def write_image_folder(root: Path, n: int, size=(28, 28), channels: int = 1, classes: int = 0, ext: str = "png",
                       seed: int = 0) -> dict[str, np.ndarray]:
    """n image files (`classes` > 0: spread over subfolders class_0, class_1, ...); returns {relative path: pixels}."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    written = {}
    for i, pixels in enumerate(pictures(n, *size, channels, rng)):
        name = f"class_{i % classes}/img_{i:04d}.{ext}" if classes else f"img_{i:04d}.{ext}"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[..., 0] if channels == 1 else pixels).save(root / name)
        written[name] = pixels
    return written
