"""Log-space isotropic Gaussian KDE: log density, the AVAE's KL estimate, leave-one-out entropy.

All densities are computed as log-sum-exp over the KDE centres, in chunks of centres so that
memory stays O(batch × chunk) even for 10^6 centres.
"""
from __future__ import annotations

import math

import torch

DEFAULT_CHUNK = 16384


def squared_distances(z: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """‖z_i − c_j‖² for all pairs, via one matrix product (clamped at 0 against rounding)."""
    d2 = z.pow(2).sum(1, keepdim=True) + centres.pow(2).sum(1) - 2.0 * z @ centres.T
    return d2.clamp_min(0.0)


def _chunked_logsumexp(z, centres, h, chunk, self_offset=None):
    """log Σ_j exp(−‖z_i − c_j‖² / 2h²) per row i, combined over chunks of centres.

    With `self_offset` set, row i is the centre with index i + self_offset and that term is
    left out (leave-one-out).
    """
    parts = []
    for start in range(0, len(centres), chunk):
        logits = squared_distances(z, centres[start : start + chunk]) * (-0.5 / (h * h))
        if self_offset is not None:
            rows = torch.arange(len(z), device=z.device)
            cols = rows + self_offset - start
            inside = (cols >= 0) & (cols < logits.shape[1])
            logits[rows[inside], cols[inside]] = -math.inf
        parts.append(torch.logsumexp(logits, dim=1))
    return torch.logsumexp(torch.stack(parts, 1), dim=1)


def log_density(z, centres, h, *, chunk=DEFAULT_CHUNK, normalised=True):
    """log q(z) for q = (1/m) Σ_j N(z; c_j, h² I).

    With normalised=False the (2π)^{l/2} factor is left out, as in the paper's code (it cancels
    against the same omission in the prior).
    """
    m, l = centres.shape
    log_q = _chunked_logsumexp(z, centres, h, chunk) - math.log(m) - l * math.log(h)
    if normalised:
        log_q = log_q - 0.5 * l * math.log(2 * math.pi)
    return log_q


def kl_to_standard_normal(
    z: torch.Tensor,
    centres: torch.Tensor,
    h: float,
    *,
    log_floor: float | None = None,
    log_base: float = 10.0,
    prior_log_floor: float | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """The AVAE's KL estimate  mean_b [log(q(z_b) + ε) − log(p(z_b) + ε_p)] / ln(base).

    q is the KDE over the (lagging, constant) `centres`; p = N(0, I). Both omit (2π)^{l/2} as
    the paper's code does. `log_floor` is log ε, the per-dataset density floor; None disables it.
    `prior_log_floor` reproduces the authors' float32 guard log(p + 1e-30): with it a code with
    ‖z‖² > 138 feels no pull back to the prior, so by default the prior stays exact.
    The centres are detached so gradients reach only the batch codes z.
    """
    log_q = log_density(z, centres.detach(), h, chunk=chunk, normalised=False)
    if log_floor is not None:
        log_q = torch.logaddexp(log_q, torch.full_like(log_q, log_floor))
    log_p = -0.5 * z.pow(2).sum(1)
    if prior_log_floor is not None:
        log_p = torch.logaddexp(log_p, torch.full_like(log_p, prior_log_floor))
    return (log_q - log_p).mean() / math.log(log_base)


def loo_log_density(z: torch.Tensor, h: float, *, chunk: int = DEFAULT_CHUNK, normalised: bool = True) -> torch.Tensor:
    """log q_{−i}(z_i) for every code: the KDE over all codes but z_i (n − 1 centres)."""
    n, l = z.shape
    lse = torch.cat([
        _chunked_logsumexp(z[start : start + chunk], z, h, chunk, self_offset=start)
        for start in range(0, n, chunk)
    ])
    log_q = lse - math.log(n - 1) - l * math.log(h)
    return log_q - 0.5 * l * math.log(2 * math.pi) if normalised else log_q


def loo_entropy(z: torch.Tensor, h: float, *, chunk: int = DEFAULT_CHUNK, normalised: bool = True) -> float:
    """Leave-one-out KDE entropy estimate  −mean_i log q_{−i}(z_i), in nats.

    Set normalised=False to drop the (2π)^{l/2} constant as the paper's entropy script does.
    """
    return float(-loo_log_density(z, h, chunk=chunk, normalised=normalised).mean())
