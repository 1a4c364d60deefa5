"""A synthetic ground truth, for checks with exactly known answers."""
from __future__ import annotations

import numpy as np
import torch

from ...errors import AvaeError


class SyntheticFactors:
    """A factor grid whose 'images' are uint8 (n, 1, 1, K) tensors holding the factor classes.

    `read_factors(images)` recovers the classes, so a `represent` can be any function of the true
    factors (identity, a rotation, noise, an entangled mix) and the metrics' answers are known.
    """

    def __init__(self, factor_sizes=(3, 4, 5, 6), factor_names=None):
        self.factor_sizes = tuple(int(s) for s in factor_sizes)
        if max(self.factor_sizes) > 256:
            raise AvaeError("SyntheticFactors stores classes in uint8 pixels: factor sizes must be ≤ 256")
        self.factor_names = tuple(factor_names or (f"f{k}" for k in range(len(self.factor_sizes))))
        self.shape = (1, 1, len(self.factor_sizes))

    def __len__(self) -> int:
        return int(np.prod(self.factor_sizes))

    def sample_factors(self, n: int, generator: np.random.Generator) -> np.ndarray:
        return np.stack([generator.integers(0, s, size=n) for s in self.factor_sizes], axis=1).astype(np.int64)

    def index_of(self, classes) -> np.ndarray:
        classes = np.atleast_2d(np.asarray(classes, dtype=np.int64))
        return np.ravel_multi_index(tuple(classes.T), self.factor_sizes).astype(np.int64)

    def images_for_factors(self, classes) -> torch.Tensor:
        classes = np.atleast_2d(np.asarray(classes, dtype=np.int64))
        return torch.from_numpy(classes.astype(np.uint8)[:, None, None, :].copy())

    @staticmethod
    def read_factors(images) -> np.ndarray:
        """Factor classes (n, K) int64 of images made by `images_for_factors`."""
        return np.asarray(images).reshape(len(images), -1).astype(np.int64)

    def scaled(self, images) -> np.ndarray:
        """Factor classes mapped to [0, 1] per factor, (n, K) float64."""
        return self.read_factors(images) / (np.asarray(self.factor_sizes, dtype=np.float64) - 1.0)
