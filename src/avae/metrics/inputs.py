"""Checks of a metric's input arrays: a NaN or a too-small set is reported, never scored."""
from __future__ import annotations

import numpy as np

from ..errors import AvaeError


def points(x, name: str, *, min_rows: int = 2) -> np.ndarray:
    """`x` as a finite float64 (n, d) array with n ≥ min_rows."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or len(a) < min_rows:
        raise AvaeError(f"{name} must be an (n ≥ {min_rows}, d) array, got shape {a.shape}")
    finite(a, name)
    return a


def finite(a: np.ndarray, name: str) -> np.ndarray:
    bad = int(a.size - np.isfinite(a).sum())
    if bad:
        raise AvaeError(f"{name} hold {bad} non-finite values (NaN or inf) of {a.size}; they cannot be scored")
    return a


def same_shape(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape != b.shape:
        raise AvaeError(f"{names} must have the same shape, got {a.shape} and {b.shape}")
