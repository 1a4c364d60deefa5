"""FactorVAE (Kim & Mnih 2018): the VAE plus γ·TC, the total correlation estimated by a
discriminator that tells codes of q(z) from codes with every dimension permuted across the batch
(samples of Π_j q(z_j)): TC ≈ E_q[log D(z)/(1 − D(z))] = E_q[logit₀ − logit₁].

The discriminator (6 hidden layers of 1000, LeakyReLU 0.2, two logits) takes one Adam step
(lr 1e-4, β = (0.5, 0.9)) after every VAE step, on the codes that step sampled: the first half of
the batch as 'joint' samples, the second half permuted as 'product of marginals' samples (the
paper draws a second batch for the permuted codes; the halves are independent in the same way).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .base import register_model
from .discriminator import Discriminated
from .regularisers import gaussian_kl, permute_dims
from .vae import GaussianVAE
from ..schema import setting


@register_model
class FactorVAE(Discriminated, GaussianVAE):
    name = "factor_vae"
    description = "FactorVAE (Kim & Mnih 2018): VAE + γ·TC, TC from a discriminator on permuted codes"

    @dataclass(frozen=True)
    class Params:
        gamma: float = setting(10.0, minimum=0)  # weight of the total correlation
        disc_hidden: list = setting(factory=lambda: [1000] * 6, items={"kind": int, "minimum": 1, "maximum": 65536}, min_length=1)
        disc_lr: float = setting(1e-4, above=0)
        disc_betas: list = setting(factory=lambda: [0.5, 0.9], items={"kind": float, "minimum": 0, "below": 1}, length=2)

    def __init__(self, spec, latent_dim, arch, width, params: Params):
        super().__init__(spec, latent_dim, arch, width, params)
        self.gamma = params.gamma
        self.init_discriminator(params.disc_hidden, 2, width, params.disc_lr, params.disc_betas)

    def tc_estimate(self, z: torch.Tensor) -> torch.Tensor:
        logits = self.frozen_discriminator(z).float()
        return (logits[:, 0] - logits[:, 1]).mean()

    def regulariser(self, z, mu, logvar):
        kl = gaussian_kl(mu, logvar).mean()
        tc = self.tc_estimate(z)
        return kl + self.gamma * tc, {"kl": kl, "tc": tc}

    def after_step(self, ctx, x, losses):
        """One discriminator step on the step's sampled codes: class 0 = codes of q(z), class 1 = permuted codes."""
        z = losses["z"].detach()
        half = len(z) // 2
        joint, marginals = z[:half], permute_dims(z[half : 2 * half])
        logits = self.discriminator(torch.cat([joint, marginals]))
        labels = torch.cat([torch.zeros(half, dtype=torch.long), torch.ones(half, dtype=torch.long)]).to(z.device)
        self.discriminator_step(F.cross_entropy(logits.float(), labels), ctx)
