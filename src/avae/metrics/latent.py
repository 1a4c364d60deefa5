"""Latent-space metrics on held-out codes: whitened entropy, Gaussian-fit KL, a χ² test of ‖z‖²,
collapsed axes, and reconstruction errors. Pure functions of arrays."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from .. import schema
from ..errors import AvaeError
from ..kde import loo_log_density
from ..objective import log_density_floor
from .inputs import finite, points, same_shape

COLLAPSE_VARIANCE = 0.01  # an axis is collapsed when the codes' variance along it is below this


def whiten(z: np.ndarray, jitter: float = 1e-4) -> np.ndarray:
    """ZCA whitening with C = ZᵀZ/(n−1), not mean-centred (the paper's entropy script)."""
    z = points(z, "codes")
    c = z.T @ z / (len(z) - 1)
    eigval, eigvec = np.linalg.eigh(c)
    return z @ (eigvec @ np.diag(1 / np.sqrt(eigval + jitter)) @ eigvec.T)


def whitened_entropy(z: np.ndarray, h: float, floor_quantile: float = 1 - 5e-4) -> dict:
    """Leave-one-out KDE entropy of whitened codes, without the (l/2)·log 2π constant.

    Kernel width h is the AVAE's corrected bandwidth; the density has the floor ε of
    `log_density_floor` at `floor_quantile`. The reference for N(0, I) codes is l/2.
    """
    zw = torch.as_tensor(whiten(z))
    l = zw.shape[1]
    log_q = loo_log_density(zw, h, normalised=False)
    log_q = torch.logaddexp(log_q, torch.full_like(log_q, log_density_floor(h, l, floor_quantile)))
    return {"entropy": float(-log_q.mean()), "reference": l / 2, "params": {"h": h, "floor_quantile": floor_quantile,
            "n": len(zw), "whitening": "ZCA, uncentred, +1e-4"}}


def gaussian_entropy_reference(latent_dim: int, n: int, h: float, seed: int,
                               floor_quantile: float = 1 - 5e-4) -> float:
    """What `whitened_entropy` gives on n true N(0, I) samples of dimension l: the reference the
    estimator can reach, which lies below l/2 by its own bias (kernel width h, finite n)."""
    z = np.random.default_rng([seed, latent_dim, n]).standard_normal((n, latent_dim))
    return whitened_entropy(z, h, floor_quantile)["entropy"]


def gaussian_kl(z: np.ndarray, variance=1.0, mean=None) -> float:
    """KL( N(μ̂, Σ̂) ‖ N(mean, Σ) ) of a Gaussian fitted to the codes; Σ = variance·I for a scalar
    variance, else the given l × l covariance (mean 0 unless given)."""
    z = points(z, "codes")
    l = z.shape[1]
    mu, cov = z.mean(0), np.cov(z, rowvar=False).reshape(l, l)
    target_mean, target_cov = _target(l, variance, mean)
    diff = mu - target_mean
    sign, logdet = np.linalg.slogdet(cov)
    if sign <= 0 or np.linalg.matrix_rank(cov, hermitian=True) < l:  # rounding can leave a positive sign
        raise AvaeError(f"the codes' covariance is singular ({len(z)} codes in {l} dimensions, or an axis without "
                        f"variation), so a Gaussian fit has no density; use more than {l} codes")
    _, target_logdet = np.linalg.slogdet(target_cov)
    inverse = np.linalg.inv(target_cov)
    return float(0.5 * (np.trace(inverse @ cov) + diff @ inverse @ diff - l + target_logdet - logdet))


def norm_chi2_test(z: np.ndarray, variance=1.0, mean=None) -> dict:
    """Kolmogorov–Smirnov test of the squared Mahalanobis norm (z−mean)ᵀΣ⁻¹(z−mean) against χ²_l
    (for Σ = variance·I: ‖z‖²/variance)."""
    z = points(z, "codes")
    l = z.shape[1]
    target_mean, target_cov = _target(l, variance, mean)
    white = np.linalg.solve(np.linalg.cholesky(target_cov), (z - target_mean).T)
    result = stats.kstest((white**2).sum(0), stats.chi2(df=l).cdf)
    isotropic = np.allclose(target_cov, target_cov[0, 0] * np.eye(l))
    described = float(target_cov[0, 0]) if isotropic else "full covariance"
    return {"ks_statistic": float(result.statistic), "p_value": float(result.pvalue), "variance": described}


def _target(l: int, variance, mean) -> tuple[np.ndarray, np.ndarray]:
    cov = np.asarray(variance, np.float64)
    cov = cov * np.eye(l) if cov.ndim == 0 else cov.reshape(l, l)
    return (np.zeros(l) if mean is None else np.asarray(mean, np.float64)), cov


def collapsed_axes(z: np.ndarray, threshold: float = COLLAPSE_VARIANCE) -> dict:
    """Axes along which the codes barely vary: per-axis variance below `threshold`."""
    var = points(z, "codes").var(0, ddof=1)
    return {"count": int((var < threshold).sum()), "criterion": f"per-axis code variance < {threshold}",
            "variances": var.tolist()}


def reconstruction_errors(x: np.ndarray, x_hat: np.ndarray) -> dict:
    """Per-pixel MSE and per-image SSE, in the data's value range."""
    x, x_hat = np.asarray(x, np.float64), np.asarray(x_hat, np.float64)
    same_shape(x, x_hat, "images and their reconstructions")
    if x.ndim < 2 or len(x) == 0:
        raise AvaeError(f"reconstruction errors need a batch of images (n ≥ 1, ...), got shape {x.shape}")
    diff = finite(x, "images") - finite(x_hat, "reconstructions")
    sse = (diff.reshape(len(diff), -1) ** 2).sum(1)
    return {"mse_per_pixel": float(sse.mean() / diff[0].size), "sse_per_image": float(sse.mean())}


@dataclass(frozen=True)
class LatentFit:
    """How closely codes follow a sampler N(0, v·I): what `avae.latent_fit` returns.

    ks_statistic and p_value: the Kolmogorov–Smirnov test of ‖z‖²/v against χ²_l (0 is a perfect fit;
    n true samples give about 0.87/√n on average); gaussian_kl_to_sampling_distribution: KL(N(μ̂, Σ̂) ‖ N(0, v·I))
    of the Gaussian fitted to the codes, in nats; gaussian_kl_to_prior: the same to N(0, I). These are the figures
    `avae evaluate` writes under latent_quality (norm_chi2_test, gaussian_kl_to_sampling_distribution,
    gaussian_kl_to_prior).
    """
    ks_statistic: float
    p_value: float
    gaussian_kl_to_sampling_distribution: float
    gaussian_kl_to_prior: float
    sampling_variance: float
    n: int
    latent_dim: int


def latent_fit(codes, h: float | None = None, *, variance: float | None = None) -> LatentFit:
    """Codes (n, l) against the sampler that generation draws from: N(0, (1 − h²)I) for the AVAE's corrected
    bandwidth h (`AggregateKL.h`, `avae.bandwidth(l, m).h`), or N(0, variance·I). Give one of the two.

    codes: a torch.Tensor (detached here) or an array, more codes than dimensions; numbers in float64.
    """
    if (h is None) == (variance is None):
        raise AvaeError("latent_fit takes the sampler as h (N(0, (1−h²)I), the AVAE's corrected bandwidth) "
                        "or as variance (N(0, variance·I)), exactly one of them")
    if h is not None:
        v = 1.0 - schema.check_value("h", h, float, {"minimum": 0, "below": 1}) ** 2
    else:
        v = float(schema.check_value("variance", variance, float, {"above": 0}))
    if isinstance(codes, torch.Tensor):
        codes = codes.detach().cpu().double().numpy()
    try:
        z = points(codes, "codes")
    except (TypeError, ValueError):
        raise AvaeError(f"codes must be an (n, l) array of numbers, got {schema.show(codes)}") from None
    to_sampler = gaussian_kl(z, v)  # first: it refuses n ≤ l codes (a singular covariance) in avae's words
    test = norm_chi2_test(z, v)
    return LatentFit(ks_statistic=test["ks_statistic"], p_value=test["p_value"],
                     gaussian_kl_to_sampling_distribution=to_sampler, gaussian_kl_to_prior=gaussian_kl(z, 1.0),
                     sampling_variance=v, n=len(z), latent_dim=z.shape[1])
