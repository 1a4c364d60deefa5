"""The VAE and β-VAE, and the Gaussian-encoder base the other VAE-family models share.

A Gaussian encoder is the AVAE's encoder with its final layer doubled (the paper's k = 2): the
first l outputs are the posterior mean μ (the code, what `encode` returns), the next l the
log-variance. Training decodes one reparameterised sample z = μ + σ·ε (ε from torch's global CPU RNG,
which checkpoints save and restore); validation decodes the mean and evaluates the regulariser
with ε from a fixed seed, so validation losses are deterministic and leave the global RNG alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Model, register_model
from .regularisers import gaussian_kl, log_normal, reparameterise
from ..schema import setting

VALIDATION_SEED = 0


class GaussianVAE(Model):
    """Reconstruction of a posterior sample + a regulariser of (z, μ, log σ²) given by `regulariser`."""

    codes_per_latent = 2

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²), each (B, l), in float32."""
        out = self.encoder(x).float()
        return out[:, : self.latent_dim], out[:, self.latent_dim :]

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; 0, I) (B,), in z's dtype: the prior of the KL term."""
        return log_normal(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)

    def regulariser(self, z, mu, logvar) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the term added to the reconstruction cost, named parts to log)."""
        raise NotImplementedError

    def training_loss(self, x):
        mu, logvar = self.posterior(x)
        z = reparameterise(mu, logvar)
        recon = self.likelihood.per_image(self.decoder(z), x).mean()
        reg, parts = self.regulariser(z, mu, logvar)
        return {"loss": recon + reg, "recon": recon, **parts, "z": z}

    def validation_loss(self, x):
        mu, logvar = self.posterior(x)
        recon = self.likelihood.per_image(self.decoder(mu), x).mean()
        gen = torch.Generator().manual_seed(VALIDATION_SEED)
        z = reparameterise(mu, logvar, generator=gen)
        reg, parts = self.regulariser(z, mu, logvar)
        loss = recon + reg
        return {"loss": loss, "objective": loss, "recon": recon, **parts, "z": mu}


@register_model
class VAE(GaussianVAE):
    name = "vae"
    description = "VAE: Gaussian encoder (mean, log-variance), reconstruction + closed-form KL to N(0,I)"

    @dataclass(frozen=True)
    class Params:
        pass

    def regulariser(self, z, mu, logvar):
        kl = gaussian_kl(mu, logvar).mean()
        return kl, {"kl": kl}


@register_model
class BetaVAE(GaussianVAE):
    name = "beta_vae"
    description = "β-VAE (Higgins et al. 2017): reconstruction + β·KL to N(0,I)"

    @dataclass(frozen=True)
    class Params:
        beta: float = setting(4.0, minimum=0)  # Higgins et al.'s dSprites value

    def __init__(self, spec, latent_dim, arch, width, params: Params):
        super().__init__(spec, latent_dim, arch, width, params)
        self.beta = params.beta

    def regulariser(self, z, mu, logvar):
        kl = gaussian_kl(mu, logvar).mean()
        return self.beta * kl, {"kl": kl}
