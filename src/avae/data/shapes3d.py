"""3D Shapes: 480,000 RGB 64×64 images of an object in a room on the official factor grid.

Factors, row-major as in the official `3dshapes.h5` (DeepMind): floor_hue 10, wall_hue 10,
object_hue 10 (values 0, 0.1, ..., 0.9), scale 8 (0.75 ... 1.25), shape 4 (0 cube, 1 cylinder,
2 sphere, 3 capsule), orientation 15 (−30° ... 30°).

`Shapes3DFile` reads the official file lazily with h5py (an optional dependency:
`pip install 'avae[shapes3d]'`). `ProceduralShapes3D` renders any image on demand,
deterministically, with no download. Both are selected by the dataset option `source`
(auto/file/procedural) exactly as for dSprites.

The procedural scene (world units, y up), ray-cast per pixel through a pinhole camera:
- floor: the plane y = 0; wall: the plane z = 2.2 behind the object (both unbounded).
- object: centred on the origin, standing on the floor, half-width a = 0.5 · scale:
  cube (side 2a), cylinder (radius a, height 2a), sphere (radius a), capsule (radius 0.75a,
  height 2.6a, upright).
- camera: 4.0 from the vertical axis, 1.7 above the floor, aimed at (0, 0.5, 0) with a 44°
  field of view; `orientation` turns it about the vertical axis through the object
  (positive: counter-clockwise seen from above), so the wall/floor boundary tilts, the cube turns
  and the shading changes.
- light: a point light fixed in the room at (−1.6, 3.6, −2.4): Lambert shading with ambient 0.35
  on every surface, the object's shadow on floor and wall, a small white highlight on the object.
- colour: HSV(hue, 0.8, 1.0) → RGB multiplied by the shading, highlight added, rounded to uint8.

The geometry (which surface each pixel sees, its shading) depends only on (scale, shape,
orientation): 8 × 4 × 15 = 480 combinations, ray-cast once in one vectorised numpy pass (float32,
about 1 s on one core) on first use and kept, painted in each of the 10 hues (59 MB). An image is
then a per-pixel choice among three paintings by the surface the pixel shows, vectorised over the
batch (10,000 images in about 0.3 s), so a hue changes only the pixels of its own surface.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ..errors import AvaeError
from .base import Dataset, register_dataset
from .factors import FactorImages, FactorOptions, load_factor_dataset, where

SIDE = 64
H5_NAME = "3dshapes.h5"
HOW_TO_GET = (
    f"download {H5_NAME} from https://github.com/deepmind/3d-shapes (https://storage.googleapis.com/3d-shapes/"
    f"{H5_NAME}) into the data root, pass --set data.options.download=true when online, "
    "or --set data.options.source=procedural"
)
FLOOR, WALL, OBJECT = 0, 1, 2  # surface labels of `segments`
SHAPES = ("cube", "cylinder", "sphere", "capsule")
OFFICIAL_SIZES = (10, 10, 10, 8, 4, 15)

# Scene constants (world units; see the module docstring).
WALL_Z = 2.2
CAMERA_DISTANCE, CAMERA_HEIGHT, TARGET_HEIGHT = 4.0, 1.7, 0.5
FIELD_OF_VIEW = 44.0  # degrees, horizontal = vertical
LIGHT = (-1.6, 3.6, -2.4)
AMBIENT = 0.35
SPECULAR, SHININESS = 0.22, 24.0
SATURATION, VALUE = 0.8, 1.0
HALF_WIDTH = 0.5  # a = 0.5 · scale
CAPSULE_RADIUS, CAPSULE_HEIGHT = 0.75, 2.6  # × a
EPS = 1e-4  # ray offset: hits closer than this are ignored (avoids self-shadowing)
COMPOSE_CHUNK = 1024  # images composed at once (~40 MB of temporaries)


class Shapes3DFactors(FactorImages):
    """The official 3D Shapes factor grid and label values."""

    shape = (3, SIDE, SIDE)
    factor_names = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    factor_sizes = OFFICIAL_SIZES
    factor_grids = (
        np.linspace(0.0, 0.9, 10),
        np.linspace(0.0, 0.9, 10),
        np.linspace(0.0, 0.9, 10),
        np.linspace(0.75, 1.25, 8),
        np.arange(4.0),
        np.linspace(-30.0, 30.0, 15),
    )


# --- ray casting ------------------------------------------------------------------------------------
# numpy float32, single-threaded (so it neither fights over nor waits for torch's thread pool).
# Vectors are tuples (x, y, z) of same-shaped arrays: elementwise work only.
DTYPE = np.float32  # float64 gives the same labels and shading within 1e-3, 3-4x slower
INF = np.float32(np.inf)


def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _along(o, d, t):
    return tuple(oc + t * dc for oc, dc in zip(o, d))


def _pick(mask, a, b):
    return tuple(np.where(mask, x, y) for x, y in zip(a, b))


def _nonzero(x):
    return np.where(np.abs(x) > 1e-12, x, np.float32(1e-12))


def _sphere(o, d, centre_y, radius):
    """Nearest hit t > EPS of rays o + t·d (|d| = 1) with a sphere on the y axis, and its normal."""
    oc = (o[0], o[1] - centre_y, o[2])
    b = _dot(oc, d)
    disc = b * b - (_dot(oc, oc) - radius * radius)
    root = np.sqrt(np.maximum(disc, 0))
    near, far = -b - root, -b + root
    t = np.where(near > EPS, near, np.where(far > EPS, far, INF))
    t = np.where(disc >= 0, t, INF)
    return t, tuple(c / radius for c in _along(oc, d, t))


def _cylinder_side(o, d, radius, y0, y1):
    """The side of a vertical cylinder about the y axis between heights y0 and y1, and its normal."""
    a = np.maximum(d[0] * d[0] + d[2] * d[2], 1e-12)
    b = o[0] * d[0] + o[2] * d[2]
    disc = b * b - a * (o[0] * o[0] + o[2] * o[2] - radius * radius)
    root = np.sqrt(np.maximum(disc, 0))
    best = np.full_like(b, INF)
    for t in ((-b + root) / a, (-b - root) / a):  # the near root last, so it wins where both are valid
        y = o[1] + t * d[1]
        best = np.where((disc >= 0) & (t > EPS) & (y >= y0) & (y <= y1), t, best)
    return best, ((o[0] + best * d[0]) / radius, np.zeros_like(best), (o[2] + best * d[2]) / radius)


def _cap(o, d, radius, y):
    """The disc of radius `radius` at height y, facing up."""
    t = (y - o[1]) / _nonzero(d[1])
    x, z = o[0] + t * d[0], o[2] + t * d[2]
    t = np.where((t > EPS) & (x * x + z * z <= radius * radius), t, INF)
    zero = np.zeros_like(t)
    return t, (zero, zero + 1, zero)


def _closest(*hits):
    t, normal = hits[0]
    for t2, n2 in hits[1:]:
        closer = t2 < t
        t = np.where(closer, t2, t)
        normal = _pick(closer, n2, normal)
    return t, normal


def intersect_object(shape: int, o, d, a):
    """Distance t along unit rays o + t·d to the object (inf: missed) and its unit normal there.

    o, d: (x, y, z) arrays; a: half-widths of the same shape.
    """
    if shape == 0:  # cube |x|, |z| ≤ a, 0 ≤ y ≤ 2a, by the slab method
        t_near = t_far = axis = None
        for k, (lo, hi) in enumerate(((-a, a), (0 * a, 2 * a), (-a, a))):
            inv = 1 / _nonzero(d[k])
            t0, t1 = (lo - o[k]) * inv, (hi - o[k]) * inv
            near, far = np.minimum(t0, t1), np.maximum(t0, t1)
            if t_near is None:
                t_near, t_far, axis = near, far, np.zeros(near.shape, np.uint8)
            else:
                axis = np.where(near > t_near, np.uint8(k), axis)
                t_near, t_far = np.maximum(t_near, near), np.minimum(t_far, far)
        t = np.where((t_near <= t_far) & (t_near > EPS), t_near, INF)
        normal = tuple(np.where(axis == k, -np.sign(d[k]), np.float32(0)) for k in range(3))
        return t, normal
    if shape == 1:  # cylinder: radius a, 0 ≤ y ≤ 2a, flat top
        return _closest(_cylinder_side(o, d, a, 0, 2 * a), _cap(o, d, a, 2 * a))
    if shape == 2:  # sphere resting on the floor
        return _sphere(o, d, a, a)
    radius = CAPSULE_RADIUS * a  # capsule: a cylinder with hemispherical ends, standing upright
    y0, y1 = radius, CAPSULE_HEIGHT * a - radius
    return _closest(_cylinder_side(o, d, radius, y0, y1), _sphere(o, d, y0, radius), _sphere(o, d, y1, radius))


def camera_rays(orientation_deg: np.ndarray):
    """Camera positions (3 arrays (n, 1, 1)) and unit ray directions (3 arrays (n, 64, 64))."""
    phi = np.deg2rad(np.asarray(orientation_deg, np.float64))
    origin = np.stack([-CAMERA_DISTANCE * np.sin(phi), np.full_like(phi, CAMERA_HEIGHT),
                       -CAMERA_DISTANCE * np.cos(phi)], -1)
    forward = np.array([0.0, TARGET_HEIGHT, 0.0]) - origin
    forward /= np.linalg.norm(forward, axis=-1, keepdims=True)
    right = np.cross(np.array([0.0, 1.0, 0.0]), forward)
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    up = np.cross(forward, right)
    half = np.tan(np.deg2rad(FIELD_OF_VIEW) / 2)
    s = ((np.arange(SIDE) + 0.5) / SIDE * 2 - 1) * half  # pixel centres; columns → right, rows → down
    d = forward[:, None, None] + s[None, None, :, None] * right[:, None, None] - s[None, :, None, None] * up[:, None, None]
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return (tuple(origin[:, None, None, k].astype(DTYPE) for k in range(3)),
            tuple(np.ascontiguousarray(d[..., k], DTYPE) for k in range(3)))


def _each_shape(shapes: np.ndarray, fn, o, d, a):
    """fn(shape, rows of o, d, a) per shape class, the results scattered back in image order."""
    t = np.full(a.shape, INF)
    normal = tuple(np.zeros(a.shape, DTYPE) for _ in range(3))
    for shape in range(len(SHAPES)):
        rows = np.flatnonzero(shapes == shape)
        if len(rows):
            t_rows, n_rows = fn(shape, tuple(c[rows] for c in o), tuple(c[rows] for c in d), a[rows])
            t[rows] = t_rows
            for full, part in zip(normal, n_rows):
                full[rows] = part
    return t, normal


def render_geometry(scale_classes, shape_classes, orientation_classes):
    """Surface labels (n, 64, 64) uint8, diffuse shading and highlight (n, 64, 64) float32."""
    grids = Shapes3DFactors.factor_grids
    shapes = np.asarray(shape_classes)
    full = (len(shapes), SIDE, SIDE)
    a = np.broadcast_to((HALF_WIDTH * grids[3][np.asarray(scale_classes)]).astype(DTYPE)[:, None, None], full)
    o, d = camera_rays(grids[5][np.asarray(orientation_classes)])
    o = tuple(np.broadcast_to(c, full) for c in o)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t_floor = np.where(d[1] < 0, -o[1] / np.minimum(d[1], -1e-12), INF)
        t_wall = np.where(d[2] > 0, (WALL_Z - o[2]) / np.maximum(d[2], 1e-12), INF)
        t_obj, obj_normal = _each_shape(shapes, intersect_object, o, d, a)
        on_object = t_obj < np.minimum(t_floor, t_wall)
        label = np.where(on_object, OBJECT, np.where(t_floor < t_wall, FLOOR, WALL)).astype(np.uint8)
        t = np.minimum(np.minimum(t_floor, t_wall), t_obj)
        if not np.isfinite(t).all():
            raise RuntimeError("a camera ray escaped the scene")  # the scene constants are wrong
        p = _along(o, d, t)
        zero = np.zeros(full, DTYPE)
        plane_normal = (zero, (label == FLOOR).astype(DTYPE), -(label == WALL).astype(DTYPE))
        normal = _pick(on_object, obj_normal, plane_normal)
        to_light = tuple(np.float32(lc) - pc for lc, pc in zip(LIGHT, p))
        light_distance = np.sqrt(_dot(to_light, to_light))
        to_light = tuple(c / light_distance for c in to_light)
        lambert = np.maximum(_dot(normal, to_light), 0)
        # Shadows on floor and wall: does the segment from the point to the light cross the object?
        t_block, _ = _each_shape(shapes, intersect_object, p, to_light, a)
        lit = (lambert > 0) & ~((t_block < light_distance) & ~on_object)
        lambert = np.where(lit, lambert, np.float32(0))
        diffuse = AMBIENT + (1 - AMBIENT) * lambert
        half_vector = tuple(lc - dc for lc, dc in zip(to_light, d))
        cos_half = _dot(normal, half_vector) / np.sqrt(_dot(half_vector, half_vector))
        highlight = np.where(on_object & lit, SPECULAR * np.maximum(cos_half, 0) ** SHININESS, np.float32(0))
    return label, diffuse.astype(np.float32), highlight.astype(np.float32)


def hue_palette(hues: np.ndarray) -> np.ndarray:
    """HSV(hue, SATURATION, VALUE) → RGB in [0, 1], (len(hues), 3)."""
    k = (np.array([5.0, 3.0, 1.0])[None, :] + np.asarray(hues)[:, None] * 6.0) % 6.0
    return VALUE - VALUE * SATURATION * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


class ProceduralShapes3D(Shapes3DFactors):
    """All 480,000 images rendered on demand; the same index always gives the same image."""

    _tables = None  # shared by every instance, built on first use: see `tables`
    _lock = threading.Lock()

    @classmethod
    def tables(cls) -> tuple[np.ndarray, np.ndarray]:
        """(labels (480, 1, 64, 64) uint8, painted (480 · 10, 3, 64, 64) uint8) for the 480 geometries.

        painted[10 g + h] is geometry g with every surface in hue h: an image takes each pixel
        from the painting in the hue of the surface that pixel shows (59 MB in all).
        """
        with cls._lock:
            if cls._tables is None:
                sizes = OFFICIAL_SIZES[3:]
                combos = np.stack(np.unravel_index(np.arange(int(np.prod(sizes))), sizes), axis=1)
                parts = [render_geometry(*combos[s:s + 120].T) for s in range(0, len(combos), 120)]
                labels, diffuse, highlight = (np.concatenate(p) for p in zip(*parts))  # 120 at a time: less memory
                palette = hue_palette(Shapes3DFactors.factor_grids[0]).astype(np.float32)
                hues = len(palette)
                painted = np.empty((len(combos), hues, 3, SIDE, SIDE), np.uint8)
                for start in range(0, len(combos), 48):
                    shade, shine = diffuse[start:start + 48, None, None], highlight[start:start + 48, None, None]
                    rgb = palette[None, :, :, None, None] * shade + shine
                    painted[start:start + 48] = np.clip(rgb, 0, 1) * 255 + 0.5
                cls._tables = (labels[:, None].copy(), painted.reshape(len(combos) * hues, 3, SIDE, SIDE))
            return cls._tables

    @staticmethod
    def _geometry_index(classes: np.ndarray) -> np.ndarray:
        """Index of the (scale, shape, orientation) combination: the last three factors, row-major."""
        return np.ravel_multi_index(tuple(classes[:, 3:].T), OFFICIAL_SIZES[3:])

    def images(self, idx) -> torch.Tensor:
        """uint8 (n, 3, 64, 64)."""
        return self.images_for_factors(self.factor_classes(idx))

    def images_for_factors(self, classes) -> torch.Tensor:
        classes = np.atleast_2d(np.asarray(classes, dtype=np.int64))
        self.index_of(classes)  # rejects classes off the grid
        labels, painted = self.tables()
        hues = OFFICIAL_SIZES[0]
        out = np.empty((len(classes), 3, SIDE, SIDE), np.uint8)
        for start in range(0, len(classes), COMPOSE_CHUNK):
            chunk = classes[start:start + COMPOSE_CHUNK]
            g = self._geometry_index(chunk)
            floor, wall, obj = (painted[g * hues + chunk[:, k]] for k in range(3))
            surface = labels[g]
            out[start:start + len(chunk)] = np.where(surface == FLOOR, floor, np.where(surface == WALL, wall, obj))
        return torch.from_numpy(out)

    def segments(self, classes) -> torch.Tensor:
        """Which surface each pixel shows (n, 64, 64) uint8: 0 floor, 1 wall, 2 object."""
        classes = np.atleast_2d(np.asarray(classes, dtype=np.int64))
        self.index_of(classes)
        return torch.from_numpy(self.tables()[0][self._geometry_index(classes), 0])


# --- the official file --------------------------------------------------------------------------------
def import_h5py():
    try:
        import h5py
    except ImportError:
        raise AvaeError(
            f"reading {H5_NAME} needs h5py: run 'pip install h5py' (or pip install 'avae[shapes3d]'), "
            "or use source: procedural"
        ) from None
    return h5py


class Shapes3DFile(Shapes3DFactors):
    """The official 3dshapes.h5 (`images` (480000, 64, 64, 3) uint8, `labels` (480000, 6) float64),
    read lazily: only the images of a batch are read, the file stays open."""

    def __init__(self, path: Path):
        self.path = Path(path)
        h5py = import_h5py()
        n = len(self)
        with self.reading():
            self._file = h5py.File(self.path, "r")
            for key in ("images", "labels"):
                if key not in self._file or not isinstance(self._file[key], h5py.Dataset):
                    raise AvaeError(f"{self.path} has no dataset '{key}'; {HOW_TO_GET}")
            self._images, labels = self._file["images"], self._file["labels"]
            expected = {"images": (n, SIDE, SIDE, 3), "labels": (n, 6)}
            for key, dataset in (("images", self._images), ("labels", labels)):
                if dataset.shape != expected[key]:
                    raise AvaeError(f"{self.path}: dataset '{key}' has shape {dataset.shape}, "
                                    f"expected {expected[key]}; {HOW_TO_GET}")
            if self._images.dtype != np.uint8 or labels.dtype.kind != "f":
                raise AvaeError(f"{self.path}: 'images' is {self._images.dtype} and 'labels' {labels.dtype}, "
                                f"expected uint8 and float; {HOW_TO_GET}")
            values = labels[...]
            self._images[n - 1]  # a file cut short fails here, before training starts
        self.factor_grids = self.check_order(np.round(values, 6))

    def check_order(self, values: np.ndarray) -> tuple[np.ndarray, ...]:
        """The file's images must be in row-major factor order, or `factor_classes(i)` would lie.

        Each label column must take exactly its factor's number of values, in increasing order
        along the grid; those values (the official ones, e.g. hues 0, 0.1, ..., 0.9) become the
        factor grids, so `factor_values` reports the file's own labels.
        """
        expected = self.factor_classes(np.arange(len(self)))
        grids = []
        for k, size in enumerate(self.factor_sizes):
            grid = np.unique(values[:, k])
            if len(grid) != size or not np.array_equal(np.searchsorted(grid, values[:, k]), expected[:, k]):
                self.close()
                raise AvaeError(f"{self.path}: 'labels' column {k} ({self.factor_names[k]}) is not in the official "
                                f"row-major order of {size} values; {HOW_TO_GET}")
            grids.append(grid)
        return tuple(grids)

    @contextmanager
    def reading(self):
        """Turn any failure to read the file into one AvaeError naming it."""
        try:
            yield
        except AvaeError:
            self.close()
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as err:
            self.close()
            raise AvaeError(f"{self.path} is not a readable HDF5 file ({type(err).__name__}: {err}); "
                            f"{HOW_TO_GET}") from None

    def close(self) -> None:
        handle = getattr(self, "_file", None)
        if handle is not None:
            handle.close()
            self._file = None

    def images(self, idx) -> torch.Tensor:
        """uint8 (n, 3, 64, 64).

        The sorted unique indices are read as runs of consecutive images, one slice per run (h5py's
        fancy indexing with a list is ~50x slower on a chunked file), then put back in order.
        """
        idx = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        unique, inverse = np.unique(idx, return_inverse=True)
        if len(unique) and (unique[0] < 0 or unique[-1] >= len(self)):
            raise IndexError(f"image index out of range 0..{len(self) - 1}")
        block = np.empty((len(unique), SIDE, SIDE, 3), np.uint8)
        starts = np.flatnonzero(np.diff(unique, prepend=-2) != 1)
        stops = np.append(starts[1:], len(unique))
        with self.reading():
            if self._file is None:
                raise OSError("the file was closed after an earlier error")
            for start, stop in zip(starts, stops):
                block[start:stop] = self._images[unique[start]:unique[stop - 1] + 1]
        return torch.from_numpy(np.ascontiguousarray(block[inverse].transpose(0, 3, 1, 2)))


@register_dataset("shapes3d", where("shapes3d", H5_NAME), FactorOptions)
def load_shapes3d(root, seed, options: FactorOptions) -> Dataset:
    """3D Shapes split as the paper: val = 20,000 random indices (rng `seed`), train = the rest.

    Options: `source` 'auto' (default: the official 3dshapes.h5 if it is in a data root you
    named, else rendered), 'file' or 'procedural'; `download` (default false): fetch
    3dshapes.h5 (MD5-verified, 255 MB) when it is not found.
    """
    info = {"renderer": "ray-cast floor/wall/object, see avae.data.shapes3d"}
    return load_factor_dataset(
        "shapes3d", root, seed, options, likelihood="gaussian", file_name=H5_NAME, how_to_get=HOW_TO_GET,
        open_file=Shapes3DFile, procedural=ProceduralShapes3D, procedural_info=info,
    )
