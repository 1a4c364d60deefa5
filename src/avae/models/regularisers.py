"""The baselines' regularisers as pure functions on tensors (no modules, no global state).

Every function takes codes (B, l) and returns a scalar (a batch mean) unless it says otherwise,
so the known answers in tests/test_models.py check exactly what the models minimise.
"""
from __future__ import annotations

import functools
import math

import torch
from torch import nn

LOG_2PI = math.log(2 * math.pi)

# WAE-MMD: the inverse multiquadric kernel summed over these multiples of C = 2·l·σ_p² (WAE paper).
WAE_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def full_precision(fn):
    """Run `fn` outside autocast, with half-precision tensor arguments cast to float32 (distances,
    covariances and log-sum-exps lose too much in bfloat16)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        device = next(a for a in args if isinstance(a, torch.Tensor)).device.type
        args = [a.float() if isinstance(a, torch.Tensor) and a.dtype in (torch.bfloat16, torch.float16) else a
                for a in args]
        with torch.autocast(device, enabled=False):
            return fn(*args, **kwargs)

    return wrapper


# --- Gaussian encoders ----------------------------------------------------------------------
def standard_normal(shape, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """N(0, I) draws from a CPU generator (torch's global CPU RNG when None, which checkpoints save
    and restore, also when training on a GPU), moved to `like`'s device and dtype."""
    return torch.randn(shape, generator=generator).to(like.device, like.dtype)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = μ + σ·ε, ε ~ N(0, I) from `generator` (torch's global CPU RNG when None)."""
    return mu + torch.exp(0.5 * logvar) * standard_normal(mu.shape, mu, generator)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) per sample, in closed form: ½ Σ_j (μ_j² + σ_j² − 1 − log σ_j²). Shape (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Element-wise log N(z; μ, σ²) (broadcasting)."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar))


def mss_log_weights(batch: int, dataset_size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """log of the minibatch-stratified-sampling weights of Chen et al. 2018 (App. C), (B, B).

    Row i estimates q(z_i) = (1/N) Σ_n q(z_i | x_n) from the batch: the point's own posterior
    gets 1/N, one other batch member (the next one, cyclically) stands for the stratum of size
    N − M and gets (N − M)/(N·M), the remaining M − 1 get 1/M each (M = B − 1). Each row sums to 1.
    N is raised to B when the data set is smaller than the batch.
    """
    if batch == 1:
        return torch.zeros(1, 1, device=device, dtype=dtype)
    n, m = max(dataset_size, batch), batch - 1
    w = torch.full((batch, batch), 1.0 / m, device=device, dtype=torch.float64)
    idx = torch.arange(batch, device=device)
    w[idx, idx] = 1.0 / n
    w[idx, (idx + 1) % batch] = (n - m) / (n * m)
    return w.log().to(dtype)


@full_precision
def tc_decomposition(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, dataset_size: int) -> dict[str, torch.Tensor]:
    """The β-TCVAE decomposition of E[log q(z|x) − log p(z)] with the MSS estimator, batch means:

    mi      = E[log q(z|x) − log q(z)]              (index-code mutual information)
    tc      = E[log q(z) − Σ_j log q(z_j)]          (total correlation)
    dim_kl  = E[Σ_j log q(z_j) − log p(z)]          (dimension-wise KL)

    z (B, l) are samples of q(z|x) for the rows of μ, log σ² (B, l); N = dataset_size.
    The three terms sum exactly to the single-sample KL estimate E[log q(z|x) − log p(z)].
    """
    b = z.shape[0]
    log_qz_x = log_normal(z, mu, logvar).sum(1)
    pair = log_normal(z.unsqueeze(1), mu.unsqueeze(0), logvar.unsqueeze(0))  # (B, B, l): log q(z_i,j | x_k)
    log_w = mss_log_weights(b, dataset_size, z.device, z.dtype)
    log_qz = torch.logsumexp(log_w + pair.sum(2), 1)
    log_prod_qzj = torch.logsumexp(log_w.unsqueeze(2) + pair, 1).sum(1)
    log_pz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    return {
        "mi": (log_qz_x - log_qz).mean(),
        "tc": (log_qz - log_prod_qzj).mean(),
        "dim_kl": (log_prod_qzj - log_pz).mean(),
    }


def total_correlation(z, mu, logvar, dataset_size: int) -> torch.Tensor:
    """The MSS estimate of TC(q(z)) = KL(q(z) ‖ Π_j q(z_j))."""
    return tc_decomposition(z, mu, logvar, dataset_size)["tc"]


def permute_dims(z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """FactorVAE's samples of Π_j q(z_j): every column shuffled by its own random permutation
    (drawn on the CPU, from torch's global RNG when `generator` is None)."""
    b, l = z.shape
    cols = [z[torch.randperm(b, generator=generator).to(z.device), j] for j in range(l)]
    return torch.stack(cols, 1)


@full_precision
def code_covariance(mu: torch.Tensor) -> torch.Tensor:
    """Cov[μ(x)] over the batch, E[μμᵀ] − E[μ]E[μ]ᵀ (1/B normalisation), (l, l)."""
    centred = mu - mu.mean(0, keepdim=True)
    return centred.T @ centred / mu.shape[0]


@full_precision
def dip_penalty(mu: torch.Tensor, lambda_od: float, lambda_d: float) -> torch.Tensor:
    """DIP-VAE-I: λ_od Σ_{i≠j} Cov[μ]_ij² + λ_d Σ_i (Cov[μ]_ii − 1)²."""
    cov = code_covariance(mu)
    diag = torch.diagonal(cov)
    off = cov - torch.diag(diag)
    return lambda_od * off.pow(2).sum() + lambda_d * (diag - 1).pow(2).sum()


# --- deterministic encoders --------------------------------------------------------------------
@full_precision
def imq_kernel(x: torch.Tensor, y: torch.Tensor, scales) -> torch.Tensor:
    """Σ_C C / (C + ‖x_i − y_j‖²) over the kernel scales C, (n, m)."""
    d2 = (x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1) - 2 * x @ y.T).clamp_min(0)
    return sum(c / (c + d2) for c in scales)


def wae_scales(latent_dim: int, prior_var: float = 1.0, multiples=WAE_SCALES) -> tuple[float, ...]:
    """C = 2·l·σ_p²·s for each multiple s (the WAE paper's C = 2·l·σ_p², at several scales)."""
    return tuple(2.0 * latent_dim * prior_var * s for s in multiples)


@full_precision
def mmd(x: torch.Tensor, y: torch.Tensor, scales, unbiased: bool = True) -> torch.Tensor:
    """MMD² between the samples x (n, l) and y (m, l) under the multi-scale IMQ kernel.

    unbiased: the U-statistic (within-set sums skip i = j, divided by n(n−1)); otherwise the
    V-statistic (all pairs, divided by n²), which is exactly 0 for y = x.
    """
    n, m = x.shape[0], y.shape[0]
    kxx, kyy, kxy = imq_kernel(x, x, scales), imq_kernel(y, y, scales), imq_kernel(x, y, scales)
    if unbiased:
        within_x = (kxx.sum() - kxx.diagonal().sum()) / max(n * (n - 1), 1)
        within_y = (kyy.sum() - kyy.diagonal().sum()) / max(m * (m - 1), 1)
    else:
        within_x, within_y = kxx.mean(), kyy.mean()
    return within_x + within_y - 2 * kxy.mean()


def code_l2(z: torch.Tensor) -> torch.Tensor:
    """RAE's code penalty ½‖z‖², batch mean."""
    return 0.5 * z.pow(2).sum(1).mean()


WEIGHTED = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)


def weight_l2(module: nn.Module) -> torch.Tensor:
    """Σ‖W‖² over the weight matrices and kernels of the module's dense and convolution layers
    (biases and BatchNorm scales are not decayed)."""
    weights = [m.weight for m in module.modules() if isinstance(m, WEIGHTED)]
    return sum(w.float().pow(2).sum() for w in weights)
