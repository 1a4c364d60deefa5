"""Per-image reconstruction costs: Gaussian (sum of squared errors) and Bernoulli (logits)."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from .errors import AvaeError


class Likelihood:
    """Maps the decoder's raw output to an image and scores it against the input."""

    def __init__(self, kind: str, value_range=(0.0, 1.0)):
        if kind not in ("gaussian", "bernoulli"):
            raise AvaeError(f"unknown likelihood '{kind}'; choose gaussian or bernoulli")
        self.kind = kind
        self.value_range = tuple(value_range)

    def mean(self, raw: torch.Tensor) -> torch.Tensor:
        """The decoded image in the data's value range."""
        if self.kind == "gaussian" and self.value_range == (-1.0, 1.0):
            return torch.tanh(raw)
        return torch.sigmoid(raw)

    def per_image(self, raw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """−log p(x | z) up to constants, summed over pixels: SSE or binary cross-entropy."""
        raw = raw.float()
        if self.kind == "bernoulli":
            return F.binary_cross_entropy_with_logits(raw, x, reduction="none").flatten(1).sum(1)
        return (self.mean(raw) - x).pow(2).flatten(1).sum(1)
