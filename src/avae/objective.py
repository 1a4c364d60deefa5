"""The AVAE's parts for any autoencoder: the aggregate-posterior KL, the σ rule and the sampler.

A training loop with its own encoder and decoder is the AVAE when it minimises
recon / σ + AggregateKL(z, kde_codes) — kde_codes being the detached codes of m other training
images, re-encoded every few steps — sets σ from the validation error after every epoch, and
generates from `sample_latent`. The `avae` model (models/avae.py) is built from the same parts.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from . import kde_bandwidth as bw, schema
from .errors import AvaeError
from .kde import kl_to_standard_normal


def log_density_floor(h: float, latent_dim: int, quantile: float) -> float:
    """log ε: one un-normalised kernel at the `quantile` of ‖z‖² for z ~ N(0, v I), v = round(h², 2).

    This is the authors' 'encoded epsilon'; at l = 128 it changes the gradient for a third of
    the points, so it is part of the method, not only a guard. Below h ≈ 0.07 their rounding
    gives v = 0 (a NaN floor), so there v = h².
    """
    from scipy.stats import chi2  # here, not at import: it costs a second that `avae models` need not spend

    v = round(h * h, 2) or h * h
    d2 = chi2.ppf(quantile, df=latent_dim, scale=v)
    return -d2 / (2 * v) - latent_dim * math.log(h)


def sigma_from_validation(val_recon: float) -> float:
    """σ for the next epoch: √(mean per-image validation reconstruction cost)."""
    return math.sqrt(max(val_recon, 1e-12))


class AggregateKL(nn.Module):
    """KL(q ‖ N(0, I)) of the aggregate posterior q, a Gaussian KDE over `kde_size` codes with the
    bias-corrected bandwidth h(latent_dim, kde_size), estimated at a batch of codes.

    Call it with the batch's codes z (B, l), which receive the gradient, and the KDE codes (m, l),
    which are treated as constants. `log_base` 10 and the density floor at `density_floor_quantile`
    are the AVAE's settings; `prior_floor` (None: exact prior) reproduces the authors' p(z) + 1e-30.
    A non-finite result (NaN or infinite codes) raises AvaeError unless `check_finite` is False (avae's
    trainer checks the whole loss itself, on every rank at once).
    """

    def __init__(self, latent_dim: int, kde_size: int, *, log_base: float = 10.0,
                 density_floor_quantile: float | None = 1 - 1e-6, prior_floor: float | None = None,
                 bandwidth_seed: int = 0, check_finite: bool = True):
        super().__init__()
        bw.check_sizes(latent_dim, kde_size, bandwidth_seed)  # types and ranges, in avae's words
        if density_floor_quantile is not None and not 0 < density_floor_quantile < 1:
            raise AvaeError(f"model.density_floor_quantile must be in (0, 1) or null, got {density_floor_quantile}")
        if prior_floor is not None and not 0 < prior_floor < 1:
            raise AvaeError(f"model.prior_floor must be in (0, 1) or null, got {prior_floor}")
        if not log_base > 1:
            raise AvaeError(f"model.kl_log_base must be greater than 1, got {log_base}")
        self.latent_dim, self.kde_size, self.log_base = latent_dim, kde_size, log_base
        self.bandwidth = bw.bandwidth(latent_dim, kde_size, seed=bandwidth_seed)
        self.h = self.bandwidth.h
        self.log_floor = (None if density_floor_quantile is None
                          else log_density_floor(self.h, latent_dim, density_floor_quantile))
        self.prior_log_floor = None if prior_floor is None else math.log(prior_floor)
        self.check_finite = check_finite

    def forward(self, z: torch.Tensor, kde_codes: torch.Tensor) -> torch.Tensor:
        for name, codes in (("z", z), ("kde_codes", kde_codes)):
            if not torch.is_tensor(codes) or not codes.is_floating_point():
                got = codes.dtype if torch.is_tensor(codes) else type(codes).__name__
                raise AvaeError(f"AggregateKL takes {name} as a floating-point torch.Tensor, got {got} "
                                "(use torch.as_tensor(x).float())")
        if z.ndim != 2 or z.shape[1] != self.latent_dim or tuple(kde_codes.shape) != (self.kde_size, self.latent_dim):
            raise AvaeError(f"AggregateKL({self.latent_dim}, {self.kde_size}) takes codes (B, {self.latent_dim}) and "
                            f"KDE codes ({self.kde_size}, {self.latent_dim}), got {tuple(z.shape)} and {tuple(kde_codes.shape)}")
        if len(z) == 0:
            raise AvaeError("AggregateKL got an empty batch of codes z; give at least one code")
        # outside autocast: under bfloat16 the distances' matrix product would lose ~0.2 of ‖z − c‖² ≈ 30
        with torch.autocast(z.device.type, enabled=False):
            kl = kl_to_standard_normal(z.float(), kde_codes.float(), self.h, log_floor=self.log_floor,
                                       prior_log_floor=self.prior_log_floor, log_base=self.log_base)
        if self.check_finite and not bool(torch.isfinite(kl.detach())):  # one scalar: NaN or infinite codes
            raise AvaeError("AggregateKL got NaN or infinite codes; the encoder diverged (lower the learning rate)")
        return kl

    @property
    def sampling_std(self) -> float:
        """Generation draws z ~ N(0, sampling_std² I), sampling_std = √(1 − h²)."""
        return self.bandwidth.sampling_std

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n codes of the AVAE's sampler N(0, (1 − h²) I) (CPU float32)."""
        schema.check_value("n", n, int, {"minimum": 0})
        return torch.randn(n, self.latent_dim, generator=generator) * self.sampling_std

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}, kde_size={self.kde_size}, h={self.h:.4f}, log_base={self.log_base:g}"
