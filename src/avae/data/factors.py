"""Image sets indexed by a full grid of ground-truth factors (dSprites, 3D Shapes).

Image i is the row-major flattening of its factor classes, as in the official files, so the
factor ↔ index arithmetic is shared here and subclasses only say how to fetch an image.
"""
from __future__ import annotations

import numpy as np
import torch

from .base import ImageSet


class FactorImages(ImageSet):
    """Subclasses set `factor_names`, `factor_sizes` and `factor_grids` (the value of each class)."""

    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    factor_grids: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return int(np.prod(self.factor_sizes))

    def factors(self, idx) -> np.ndarray:
        """Factor classes (n, n_factors) int64 of image indices."""
        idx = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        return np.stack(np.unravel_index(idx, self.factor_sizes), axis=1).astype(np.int64)

    def index_of(self, classes) -> np.ndarray:
        """Image indices of factor classes (n, n_factors): the inverse of `factors`."""
        classes = np.atleast_2d(np.asarray(classes, dtype=np.int64))
        return np.ravel_multi_index(tuple(classes.T), self.factor_sizes).astype(np.int64)

    def factor_values(self, idx) -> np.ndarray:
        """Factor values (n, n_factors) float64 of image indices."""
        classes = self.factors(idx)
        columns = [np.asarray(grid, np.float64)[classes[:, k]] for k, grid in enumerate(self.factor_grids)]
        return np.stack(columns, axis=1)

    def sample_factors(self, n: int, generator: np.random.Generator) -> np.ndarray:
        """n factor-class vectors drawn uniformly and independently per factor."""
        columns = [generator.integers(0, size, size=n) for size in self.factor_sizes]
        return np.stack(columns, axis=1).astype(np.int64)

    def images_for_factors(self, classes) -> torch.Tensor:
        return self.images(self.index_of(classes))
