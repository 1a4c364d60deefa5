"""dSprites: 737,280 binary 64×64 sprites on the official factor grid.

`ProceduralDSprites` renders any image on demand, deterministically, so everything runs with no
download. `DSpritesFile` reads the official `.npz` when a user has it. Both index images exactly
as the official file: the row-major flattening of (shape, scale, orientation, pos_x, pos_y).

Memory: the official `imgs` array is 737,280 × 64 × 64 bytes of 0/1 (2.9 GB once decompressed).
`DSpritesFile` never holds it: when opened it streams the compressed member in chunks (checking
that every value is 0 or 1) and keeps it bit-packed (np.packbits, 8 pixels per byte: 360 MiB), unpacking only the images of a batch.

Procedural geometry (pixel (i, j) covers [j, j+1] × [i, i+1]; a pixel is on when its centre is
inside the sprite):
- centre: x = 12 + 40·pos_x, y = 12 + 40·pos_y pixels (pos_y grows downwards), so every sprite
  at scale 1 in any orientation lies inside the frame: each shape fits in a disc of radius
  12·scale pixels around its centre.
- square: side 12·√2·scale ≈ 17·scale pixels.
- ellipse: semi-axes 12·scale and 6·scale pixels (aspect 2:1), long axis horizontal at 0.
- heart: (x² + y² − 1)³ − x²y³ ≤ 0 (y up), shifted so its centroid is the centre and scaled so
  it fits the same disc (about 21×20·scale pixels); it points down at orientation 0.
- orientation θ rotates the sprite counter-clockwise on screen about its centre.

Rendering tests only the pixels of a 30 × 30 square around the centre (every pixel a sprite can
cover, with a pixel of margin), which gives the same images as testing all 64 × 64.
"""
from __future__ import annotations

import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ..errors import AvaeError
from .base import Dataset, register_dataset
from .factors import VAL_SIZE, FactorImages, FactorOptions, load_factor_dataset, validation_split, where  # noqa: F401 (re-exported)

SIDE = 64
RADIUS = 12.0  # pixels: the disc around the centre that holds any sprite at scale 1
HEART_CENTRE = 0.294  # y of the heart's centroid: it turns about its centre of mass
HEART_RADIUS = 1.3  # ≥ the farthest point of the heart curve from its centroid (1.294, the tip)
CHUNK = 512  # images rendered at once: small float temporaries stay in cache (4x faster than 2048)
# pixels per side of the square tested around a centre: it holds every pixel centre within
# RADIUS + 1 of the sprite's centre, and no sprite reaches beyond RADIUS (a pixel of margin for rounding)
WINDOW = 30
READ_CHUNK = 4096  # images decompressed at once from the official file (16 MB)
GEOMETRY = (
    "centre (12 + 40*pos_x, 12 + 40*pos_y) px; any sprite fits a disc of radius 12*scale px; "
    "square side 17*scale, ellipse semi-axes 12x6*scale, heart (x^2+y^2-1)^3 <= x^2 y^3 pointing down; "
    "orientation rotates counter-clockwise; pixel on when its centre is inside"
)
NPZ_NAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
HOW_TO_GET = (
    f"download {NPZ_NAME} from https://github.com/deepmind/dsprites-dataset into the data root, "
    "pass --set data.options.download=true when online, or --set data.options.source=procedural"
)


class DSpritesFactors(FactorImages):
    """The official dSprites factor grid (the constant colour factor is left out)."""

    shape = (1, SIDE, SIDE)
    factor_names = ("shape", "scale", "orientation", "pos_x", "pos_y")
    factor_sizes = (3, 6, 40, 32, 32)
    factor_grids = (
        np.array([1.0, 2.0, 3.0]),  # square, ellipse, heart, numbered as in the official file
        np.linspace(0.5, 1.0, 6),
        np.linspace(0.0, 2 * np.pi, 40),
        np.linspace(0.0, 1.0, 32),
        np.linspace(0.0, 1.0, 32),
    )


def inside_square(u: np.ndarray, w: np.ndarray) -> np.ndarray:
    half_side = np.float32(2.0 ** -0.5)  # the corners touch the unit disc
    return np.maximum(np.abs(u), np.abs(w)) <= half_side


def inside_ellipse(u: np.ndarray, w: np.ndarray) -> np.ndarray:
    return u * u + np.float32(4.0) * (w * w) <= 1.0


def inside_heart(u: np.ndarray, w: np.ndarray) -> np.ndarray:
    x = u * np.float32(HEART_RADIUS)
    y = w * np.float32(HEART_RADIUS) + np.float32(HEART_CENTRE)
    x2 = x * x
    r = x2 + y * y - np.float32(1.0)
    return r * r * r <= x2 * (y * y * y)


SHAPE_TESTS = (inside_square, inside_ellipse, inside_heart)


def centre_of(position):
    """Pixel coordinate of a sprite's centre for a position in [0, 1]: from RADIUS to 64 − RADIUS."""
    return RADIUS + (SIDE - 2 * RADIUS) * np.asarray(position, np.float64)


def window_start(centre: np.ndarray, window: int) -> np.ndarray:
    """First pixel row/column of the `window`-wide square drawn around each sprite centre."""
    return np.clip(np.floor(centre).astype(np.int64) - window // 2 + 1, 0, SIDE - window)


def draw_one_shape(shape_class: int, values: np.ndarray, out: np.ndarray, images: np.ndarray,
                   window: int = WINDOW) -> None:
    """Draw sprites of one shape onto blank images out[images] (uint8 (·, 64, 64), 255 = on) for
    factor values (n, 5) (scale, orientation, x, y used).

    Only a `window` × `window` square around each centre is tested (SIDE tests every pixel: the
    same images, 4.5× the work); each pixel's test is the same computation either way.
    """
    scale, angle, pos_x, pos_y = values[:, 1], values[:, 2], values[:, 3], values[:, 4]
    unit = 1.0 / (RADIUS * scale)  # pixels → sprite units (the holding disc has radius 1)
    centre_x, centre_y = centre_of(pos_x), centre_of(pos_y)
    columns = window_start(centre_x, window)[:, None] + np.arange(window)[None, :]
    rows = window_start(centre_y, window)[:, None] + np.arange(window)[None, :]
    # Per-image offsets of the window's pixel centres, already in sprite units; y flipped to point up.
    dx = (columns + 0.5 - centre_x[:, None]) * unit[:, None]
    up = (centre_y[:, None] - (rows + 0.5)) * unit[:, None]
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    # Rotate pixel offsets by −θ, which rotates the sprite by +θ; only the last step is window × window.
    # NumPy float32, single-threaded: on 2 busy cores torch's threads made these small steps 4× slower.
    u = (dx * cos).astype(np.float32)[:, None, :] + (up * sin).astype(np.float32)[:, :, None]
    w = (-dx * sin).astype(np.float32)[:, None, :] + (up * cos).astype(np.float32)[:, :, None]
    on = SHAPE_TESTS[shape_class](u, w).view(np.uint8) * np.uint8(255)
    out[images[:, None, None], rows[:, :, None], columns[:, None, :]] = on


class ProceduralDSprites(DSpritesFactors):
    """All 737,280 dSprites images rendered on demand; the same index always gives the same image."""

    def images(self, idx) -> torch.Tensor:
        """uint8 (n, 1, 64, 64) with 0 (off) and 255 (on)."""
        return self.images_for_factors(self.factor_classes(idx))

    def images_for_factors(self, classes) -> torch.Tensor:
        classes = np.atleast_2d(np.asarray(classes, dtype=np.int64))
        self.index_of(classes)  # rejects classes off the grid
        values = np.stack([grid[classes[:, k]] for k, grid in enumerate(self.factor_grids)], axis=1)
        out = np.zeros((len(classes), SIDE, SIDE), dtype=np.uint8)
        for shape_class in range(len(SHAPE_TESTS)):
            rows = np.flatnonzero(classes[:, 0] == shape_class)
            for start in range(0, len(rows), CHUNK):
                chunk = rows[start:start + CHUNK]
                draw_one_shape(shape_class, values[chunk], out, chunk)
        return torch.from_numpy(out)[:, None]


def npy_header(archive: zipfile.ZipFile, key: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype of one array in an .npz without reading its data."""
    with archive.open(f"{key}.npy") as f:
        return read_npy_header(f, key)


def read_npy_header(f, key: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    version = np.lib.format.read_magic(f)
    if version not in readers:
        raise ValueError(f"unsupported .npy format version {version} for '{key}'")
    shape, fortran, dtype = readers[version](f)
    return tuple(shape), fortran, dtype


class DSpritesFile(DSpritesFactors):
    """The official dSprites .npz; `imgs` ({0, 1}) is checked and bit-packed when opened, fetched ×255."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._packed = None
        n = len(self)
        expected = {"imgs": (n, SIDE, SIDE), "latents_classes": (n, 6), "latents_values": (n, 6)}
        with self.reading():
            with zipfile.ZipFile(self.path) as archive:
                keys = {name[:-4] for name in archive.namelist() if name.endswith(".npy")}
                missing = [key for key in expected if key not in keys]
                if missing:
                    raise AvaeError(f"{self.path} has no array '{missing[0]}'; {HOW_TO_GET}")
                headers = {key: npy_header(archive, key) for key in expected}
        for key, shape in expected.items():
            if headers[key][0] != shape:
                raise AvaeError(
                    f"{self.path}: array '{key}' has shape {headers[key][0]}, expected {shape}; {HOW_TO_GET}"
                )
        if headers["imgs"][2] != np.uint8 or headers["imgs"][1]:
            raise AvaeError(f"{self.path}: 'imgs' is {headers['imgs'][2]} (Fortran order: {headers['imgs'][1]}), "
                            f"expected C-ordered uint8; {HOW_TO_GET}")
        if headers["latents_classes"][2].kind not in "iu":
            raise AvaeError(f"{self.path}: 'latents_classes' has dtype {headers['latents_classes'][2]}, "
                            f"expected integers; {HOW_TO_GET}")
        self.check_order()
        self.packed()  # read every image now: a damaged file fails before training starts (~3 s)

    @contextmanager
    def reading(self):
        """Turn any failure to read the archive into one AvaeError naming the file."""
        try:
            yield
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError, zlib.error) as err:
            raise AvaeError(f"{self.path} is not a readable .npz file ({err}); {HOW_TO_GET}") from None

    def read_array(self, key: str) -> np.ndarray:
        with self.reading(), np.load(self.path) as npz:
            return npz[key]

    def check_order(self) -> None:
        """The file's images must be in row-major factor order, or `factor_classes(i)` would lie."""
        classes = self.read_array("latents_classes")[:, 1:]
        if not np.array_equal(classes, self.factor_classes(np.arange(len(self)))):
            raise AvaeError(
                f"{self.path}: latents_classes are not in the official row-major order; {HOW_TO_GET}"
            )

    def packed(self) -> np.ndarray:
        """All images bit-packed (n, 64, 8) uint8, read once from the archive in chunks."""
        if self._packed is None:
            n, per_image = len(self), SIDE * SIDE
            packed = np.empty((n, SIDE, SIDE // 8), np.uint8)
            with self.reading(), zipfile.ZipFile(self.path) as archive, archive.open("imgs.npy") as f:
                read_npy_header(f, "imgs")
                for start in range(0, n, READ_CHUNK):
                    count = min(READ_CHUNK, n - start)
                    raw = f.read(count * per_image)
                    if len(raw) != count * per_image:
                        raise AvaeError(f"{self.path}: 'imgs' is truncated (image {start + len(raw) // per_image} "
                                        f"of {n}); {HOW_TO_GET}")
                    block = np.frombuffer(raw, np.uint8).reshape(count, SIDE, SIDE)
                    if block.max(initial=0) > 1:
                        raise AvaeError(f"{self.path}: 'imgs' holds values other than 0 and 1 (images "
                                        f"{start}-{start + count - 1}); {HOW_TO_GET}")
                    packed[start:start + count] = np.packbits(block, axis=-1)
            self._packed = packed
        return self._packed

    def images(self, idx) -> torch.Tensor:
        """uint8 (n, 1, 64, 64) with 0 (off) and 255 (on)."""
        picked = np.unpackbits(self.packed()[np.asarray(idx, dtype=np.int64)], axis=-1)
        return torch.from_numpy(picked[:, None]).mul_(255)


@register_dataset("dsprites", where("dsprites", NPZ_NAME), FactorOptions)
def load_dsprites(root, seed, options: FactorOptions) -> Dataset:
    """dSprites split as the paper: val = 20,000 random indices (rng `seed`), train = the rest.

    Options: `source` 'auto' (default: the official .npz if it is in a data root you named,
    else rendered), 'file' (requires the .npz) or 'procedural' (always rendered); `download`
    (default false): fetch the .npz (MD5-verified) when it is not found.
    """
    return load_factor_dataset(
        "dsprites", root, seed, options, likelihood="bernoulli", file_name=NPZ_NAME, how_to_get=HOW_TO_GET,
        open_file=DSpritesFile, procedural=ProceduralDSprites, procedural_info={"geometry": GEOMETRY},
    )
