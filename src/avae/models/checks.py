"""Checks of model settings that name the bad value in one line (they come from YAML and --set)."""
from __future__ import annotations

import math

from ..errors import AvaeError


def number(value, key: str, *, minimum: float = 0.0, strict: bool = False) -> float:
    """`value` as a float ≥ minimum (> minimum when strict)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < minimum or (strict and value == minimum):
        bound = f"> {minimum:g}" if strict else f"≥ {minimum:g}"
        raise AvaeError(f"model.{key} must be a number {bound}, got {value!r}")
    return float(value)


def layer_sizes(value, key: str) -> tuple[int, ...]:
    """A non-empty list of positive integers (hidden layer widths)."""
    ok = isinstance(value, (list, tuple)) and len(value) > 0 and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
    )
    if not ok:
        raise AvaeError(f"model.{key} must be a list of positive integers such as [1000, 1000], got {value!r}")
    return tuple(value)


def betas(value, key: str) -> tuple[float, float]:
    """Adam's (β₁, β₂), each in [0, 1)."""
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1 for v in value
    )
    if not ok:
        raise AvaeError(f"model.{key} must be two numbers in [0, 1) such as [0.5, 0.9], got {value!r}")
    return float(value[0]), float(value[1])
