"""Image sets indexed by a full grid of ground-truth factors (dSprites, 3D Shapes).

Image i is the row-major flattening of its factor classes, as in the official files, so the
factor ↔ index arithmetic is shared here and subclasses only say how to fetch an image.

The choice between an official file and the procedural renderer (`source` auto/file/procedural),
the optional download and the paper's random validation split are shared too (`load_factor_dataset`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..errors import AvaeError
from ..schema import setting
from .base import Dataset, ImageSet
from .files import USER_DATA, download_missing, find_in, resolve_root, searched

VAL_SIZE = 20_000  # the paper's validation size for dSprites and 3D Shapes
SOURCES = ("auto", "file", "procedural")


class FactorImages(ImageSet):
    """Subclasses set `factor_names`, `factor_sizes` and `factor_grids` (the value of each class)
    and implement `images(idx)` (uint8 (n, C, H, W) for image indices).
    """

    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    factor_grids: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return int(np.prod(self.factor_sizes))

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    def factor_classes(self, idx) -> np.ndarray:
        """Factor classes (n, n_factors) int64 of image indices."""
        idx = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        return np.stack(np.unravel_index(idx, self.factor_sizes), axis=1).astype(np.int64)

    def index_of(self, classes) -> np.ndarray:
        """Image indices of factor classes (n, n_factors): the inverse of `factor_classes`."""
        classes = np.atleast_2d(np.asarray(classes, dtype=np.int64))
        if classes.shape[1] != len(self.factor_sizes):
            raise ValueError(f"factor classes need {len(self.factor_sizes)} columns, got {classes.shape[1]}")
        return np.ravel_multi_index(tuple(classes.T), self.factor_sizes).astype(np.int64)

    def factor_values(self, idx) -> np.ndarray:
        """Factor values (n, n_factors) float64 of image indices."""
        classes = self.factor_classes(idx)
        columns = [np.asarray(grid, np.float64)[classes[:, k]] for k, grid in enumerate(self.factor_grids)]
        return np.stack(columns, axis=1)

    def sample_factors(self, n: int, generator: np.random.Generator) -> np.ndarray:
        """n factor-class vectors drawn uniformly and independently per factor."""
        columns = [generator.integers(0, size, size=n) for size in self.factor_sizes]
        return np.stack(columns, axis=1).astype(np.int64)

    def images_for_factors(self, classes) -> torch.Tensor:
        return self.images(self.index_of(classes))


def validation_split(n: int, seed: int, size: int = VAL_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices: val = min(size, n // 5) drawn without replacement by
    numpy default_rng(seed), in draw order; train = the rest, sorted.

    For the official grids (737,280 and 480,000 images) val has the paper's 20,000 images; the
    n // 5 cap only matters for the reduced grids of test fixtures.
    """
    val = np.random.default_rng(seed).choice(n, size=min(size, n // 5), replace=False)
    rest = np.ones(n, bool)
    rest[val] = False
    return np.flatnonzero(rest).astype(np.int64), val.astype(np.int64)


def open_factor_images(name: str, root, source: str, download: bool, file_name: str, how_to_get: str,
                       open_file: Callable, procedural: Callable, procedural_info: dict):
    """The image set and its provenance for source 'auto', 'file' or 'procedural'.

    'auto' reads the official file when it is in a data root the user named (argument or
    $AVAE_DATA_ROOT), else renders, so a run without a named root never depends on what happens
    to lie in a default folder; 'file' also searches ~/.avae/data and fails when the file is
    absent; 'procedural' always renders. `download` fetches the missing file (checksum-verified)
    into the named root (else ~/.avae/data/<name>); it needs 'auto' or 'file'.
    """
    if source == "procedural":
        if download:
            raise AvaeError(f"{name}: data.options.download=true needs data.options.source auto or file, not procedural")
        return procedural(), {"source": "procedural", **procedural_info}
    folders = resolve_root(name, root, candidates=[USER_DATA] if source == "file" or download else ())
    path = next((p for p in (find_in(f, [file_name]) for f in folders) if p), None)
    if path is None and download:
        path = find_in(download_missing(name, root), [file_name])
    if path is None:
        if source == "file":
            raise AvaeError(f"file {file_name} not found in {searched(folders)}; {how_to_get}")
        return procedural(), {"source": "procedural", **procedural_info}
    return open_file(path), {"source": "file", "files": {"file": str(path)}}


def where(name: str, file_name: str):
    """Where `source: auto` looks: only in a data root the user named; without one it renders."""

    def describe(root) -> str:
        folders = resolve_root(name, root, candidates=())
        path = next((p for p in (find_in(f, [file_name]) for f in folders) if p), None)
        if path is not None:
            return f"{file_name}; found: {path}"
        looked = f"not found in {searched(folders)}, so " if folders else "else "
        return f"{file_name} in a data root you name; {looked}rendered procedurally (no file needed)"

    return describe


@dataclass(frozen=True)
class FactorOptions:
    """data.options of dSprites and 3D Shapes."""

    source: str = setting("auto", choices=SOURCES)  # auto: the official file if in a data root you named, else rendered
    download: bool = setting(False)  # fetch the official file (checksum-verified) when it is not found


def load_factor_dataset(name: str, root, seed: int, options: FactorOptions, *, likelihood: str, **how) -> Dataset:
    """A factor dataset split as the paper: val = 20,000 random indices (rng `seed`), train = the rest.

    `how`: the arguments of `open_factor_images`.
    """
    images, info = open_factor_images(name, root, options.source, options.download, **how)
    train, val = validation_split(len(images), seed)
    info.update(
        split=f"val = {len(val)} indices drawn without replacement by numpy default_rng({seed}).choice; "
        "train = all other indices, sorted; no test split",
        sizes={"train": len(train), "val": len(val)},
        factors=dict(zip(images.factor_names, images.factor_sizes)),
    )
    return Dataset(name, images.subset(train), images.subset(val), None,
                   likelihood=likelihood, value_range=(0.0, 1.0), info=info, factor_grid=images)
