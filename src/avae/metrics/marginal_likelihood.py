"""The log-likelihood of held-out images under a latent-variable model, by importance sampling.

With K draws z_1 … z_K of the encoder's posterior q(z | x),

    log p(x) ≈ log (1/K) Σ_k p(x | z_k) p(z_k) / q(z_k | x)
             = logsumexp_k [log p(x | z_k) + log p(z_k) − log q(z_k | x)] − log K,

the importance-weighted (IWAE) bound of Burda et al. 2016: its expectation lies below log p(x) and
rises towards it as K grows (K = 1 is the ELBO; with the exact posterior every weight equals p(x)).
The negative log-likelihood reported is its negative, an upper bound on the true NLL in expectation.
Everything from the decoder's output on is float64 and in log space.

The densities are the model's own: q(z | x) = N(μ(x), diag σ²(x)) from `Model.posterior`, p(z) from
`Model.log_prior` (N(0, I) for the VAE family, the VampPrior mixture for `vamp`), and p(x | z) the
normalised form of the decoder's likelihood (`avae.likelihood`):

- Bernoulli: log p(x | z) = −BCE(logits, x), a probability of binary images (exact for {0, 1} pixels).
- Gaussian: N(x; x̂(z), σ² I) with σ² = ½ (GAUSSIAN_VARIANCE). The VAE family minimises the sum of
  squared errors + the regulariser, and SSE = −log N(x; x̂, ½ I) − (D/2)·log π: σ² = ½ is the one
  variance under which the trained objective is the negative ELBO of a proper density (pythae uses
  σ² = 1 because its VAE minimises ½·SSE). It is a density of the pixel values scaled to the data's
  value range, not a probability of the uint8 images.

The draws of image i come from numpy's default_rng([seed, STREAM, i]): the same for any batch size,
device or number of images scored.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import AvaeError
from ..likelihood import Likelihood
from ..models.regularisers import log_normal

GAUSSIAN_VARIANCE = 0.5  # σ² of the Gaussian likelihood: the one under which SSE + regulariser is a negative ELBO
STREAM = 90210  # default_rng([seed, STREAM, i]) draws image i's codes; above any latent dimension, so it
#                 shares no seed with latent.py's [seed, l, n]
CODES_PER_PASS = 500  # codes decoded in one decoder call (as many images' activations in memory)


def log_prob(likelihood: Likelihood, raw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x | z) (B,) in float64, summed over pixels: the decoder's raw output `raw` (its logits,
    or its pre-activation for the Gaussian mean) against images x in the data's value range. Equals
    −likelihood.per_image(raw, x) minus the normalising constant: 0 (Bernoulli) or (D/2)·log(2πσ²)
    for σ² = ½ (Gaussian)."""
    raw, x = raw.double(), x.double()
    if likelihood.kind == "bernoulli":
        return -F.binary_cross_entropy_with_logits(raw, x, reduction="none").flatten(1).sum(1)
    squared = (likelihood.mean(raw) - x).pow(2).flatten(1).sum(1)
    dims = x[0].numel()
    return -squared / (2 * GAUSSIAN_VARIANCE) - 0.5 * dims * math.log(2 * math.pi * GAUSSIAN_VARIANCE)


def absent_reason(model, images_uint8: np.ndarray) -> str | None:
    """Why the importance-sampled likelihood is not defined for this model and these images, or None."""
    probe = torch.zeros(1, *model.spec.shape, device=model.device)
    with torch.inference_mode():
        stochastic = model.posterior(probe) is not None
        prior = stochastic and model.log_prior(torch.zeros(1, model.latent_dim, device=model.device)) is not None
    if not stochastic:
        return (f"the {model.name} model's encoder is deterministic (one code per image, no posterior q(z | x) to "
                "draw from), so it has no importance-sampled likelihood; only models with a Gaussian encoder and a "
                "prior density (the VAE family and vamp) have one")
    if not prior:
        return f"the {model.name} model defines no prior density p(z), so log p(x) cannot be importance-sampled"
    if model.likelihood.kind == "bernoulli":
        grey = int(np.count_nonzero((images_uint8 != 0) & (images_uint8 != 255)))
        if grey:
            return (f"the Bernoulli likelihood is a probability of binary images only, and {grey} of the held-out "
                    "pixels are grey (neither 0 nor 255), so its cross-entropy is no log-likelihood of these images")
    return None


def _codes(seed: int, index: int, samples: int, latent_dim: int) -> np.ndarray:
    """ε (K, l), the standard-normal draws of image `index`."""
    return np.random.default_rng([seed, STREAM, index]).standard_normal((samples, latent_dim))


@torch.inference_mode()
def log_likelihoods(model, images_uint8: np.ndarray, samples: int, seed: int, *, layout=torch.contiguous_format,
                    codes_per_pass: int = CODES_PER_PASS, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(log p̂(x), ELBO estimate) per image, each (n,) float64 in nats: the K-sample importance-weighted
    estimate, and the mean of the same K log weights. `images_uint8`: (n, C, H, W); the model in
    evaluation mode. The encoder sees the images in `layout`."""
    if samples < 1:
        raise AvaeError(f"the likelihood needs at least 1 importance sample, got {samples}")
    lo, hi = model.spec.value_range
    device, n, dim = model.device, len(images_uint8), model.latent_dim
    per_batch = max(1, codes_per_pass // samples)  # images whose K codes are decoded together
    log_px, elbo = np.empty(n), np.empty(n)
    bar = None
    if progress:
        from tqdm import tqdm

        # disable=None: a bar on a terminal only
        bar = tqdm(total=n, desc="likelihood", unit="image", leave=False, smoothing=0, disable=None)
    for start in range(0, n, per_batch):
        stop = min(start + per_batch, n)
        x = torch.as_tensor(images_uint8[start:stop]).to(device, torch.float64).div_(255).mul_(hi - lo).add_(lo)
        mu, logvar = model.posterior(x.float().contiguous(memory_format=layout))
        mu, logvar = mu.double(), logvar.double()
        eps = torch.as_tensor(np.stack([_codes(seed, i, samples, dim) for i in range(start, stop)])).to(device)
        # the decoder takes float32 codes: every density is evaluated at that very (rounded) point
        z = (mu.unsqueeze(1) + torch.exp(0.5 * logvar).unsqueeze(1) * eps).float().double()  # (b, K, l)
        log_q = log_normal(z, mu.unsqueeze(1), logvar.unsqueeze(1)).sum(2)
        flat = z.reshape(-1, dim)  # image j's K codes are rows j·K … j·K + K − 1
        log_pz = model.log_prior(flat).double().reshape(len(x), samples)
        log_px_z = torch.cat([
            log_prob(model.likelihood, model.decoder(flat[i : i + codes_per_pass].float()),
                     x[torch.arange(i, min(i + codes_per_pass, len(flat)), device=device) // samples])
            for i in range(0, len(flat), codes_per_pass)
        ]).reshape(len(x), samples)
        log_w = log_px_z + log_pz - log_q  # (b, K)
        log_px[start:stop] = (torch.logsumexp(log_w, 1) - math.log(samples)).cpu().numpy()
        elbo[start:stop] = log_w.mean(1).cpu().numpy()
        if bar is not None:
            bar.update(stop - start)
    if bar is not None:
        bar.close()
    bad = int(np.count_nonzero(~(np.isfinite(log_px) & np.isfinite(elbo))))
    if bad:
        raise AvaeError(f"the {model.name} model gave non-finite log-likelihood estimates (NaN or inf) for {bad} "
                        "held-out images; the model cannot be scored (retrain it, e.g. with a lower train.lr)")
    return log_px, elbo


def summary(log_px: np.ndarray, elbo: np.ndarray, dims: int, samples: int, likelihood: str,
            value_range=(0.0, 1.0)) -> dict:
    """What evaluate.json reports: the mean NLL in nats per image and bits per dimension
    (nats / (D·ln 2)), its standard error over the images, the negative ELBO beside it, and a note."""
    nll = -float(np.mean(log_px))
    sem = float(np.std(log_px, ddof=1) / math.sqrt(len(log_px))) if len(log_px) > 1 else None
    if likelihood == "bernoulli":
        density = "Bernoulli p(x | z): a probability of the binary images"
        note = ("A probability of the binary images themselves (a discrete likelihood; no dequantisation is "
                "involved).")
    else:
        density = f"Gaussian p(x | z) = N(x̂(z), {GAUSSIAN_VARIANCE:g}·I)"
        lo, hi = value_range
        note = (f"A continuous density of the pixel values scaled to [{lo:g}, {hi:g}] (as pythae reports it), not the "
                "probability of the discrete uint8 images: no uniform dequantisation noise is added, so these "
                "bits/dim are not comparable with discrete-likelihood figures measured on the 0–256 scale.")
    return {
        "nll_nats": nll,
        "bits_per_dim": nats_to_bits_per_dim(nll, dims),
        "nll_nats_sem": sem,
        "neg_elbo_nats": -float(np.mean(elbo)),
        "samples": samples,
        "n": len(log_px),
        "dims": dims,
        "likelihood": density,
        "note": (f"Importance-weighted bound with K = {samples} draws of the encoder's posterior per image (an upper "
                 f"bound on the NLL in expectation, tighter as K grows; neg_elbo_nats is the K = 1 bound from the same "
                 f"draws). {note}"),
    }


def nats_to_bits_per_dim(nats: float, dims: int) -> float:
    """nats per image → bits per dimension: nats / (D·ln 2)."""
    return nats / (dims * math.log(2))


def estimate(model, images_uint8: np.ndarray, samples: int, seed: int, **options) -> dict:
    """`summary` of `log_likelihoods`: the evaluation's likelihood section for a model that has one."""
    log_px, elbo = log_likelihoods(model, images_uint8, samples, seed, **options)
    return summary(log_px, elbo, int(np.prod(model.spec.shape)), samples, model.likelihood.kind,
                   model.spec.value_range)
