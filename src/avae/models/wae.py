"""WAE-MMD (Tolstikhin et al. 2018): a deterministic encoder whose batch of codes is pulled to
N(0, σ_p² I) by the MMD under the inverse multiquadric kernel k(x, y) = C/(C + ‖x − y‖²), summed
over C = 2·l·σ_p²·s for s ∈ {0.1, 0.2, 0.5, 1, 2, 5, 10}; unbiased estimate (U-statistic) against
as many prior samples as codes. Loss: recon_scale·recon + mmd_weight·MMD².

Training draws the prior samples from torch's global CPU RNG; validation from a fixed seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Model, register_model
from .regularisers import mmd, standard_normal, wae_scales
from ..schema import setting

VALIDATION_SEED = 0


@register_model
class WAE(Model):
    name = "wae"
    description = "WAE-MMD: recon_scale·recon + λ·MMD²(codes, N(0,I)), multi-scale IMQ kernel, unbiased"

    @dataclass(frozen=True)
    class Params:
        recon_scale: float = setting(0.05, above=0)
        mmd_weight: float = setting(10.0, minimum=0)  # λ
        prior_var: float = setting(1.0, above=0)  # σ_p², used in the kernel scales (the prior stays N(0, I) for sampling)

    def __init__(self, spec, latent_dim, arch, width, params: Params):
        super().__init__(spec, latent_dim, arch, width, params)
        self.recon_scale, self.mmd_weight = params.recon_scale, params.mmd_weight
        self.scales = wae_scales(latent_dim, params.prior_var)

    def _losses(self, x, generator=None):
        z = self.encoder(x).float()
        recon = self.likelihood.per_image(self.decoder(z), x).mean()
        prior = standard_normal(z.shape, z, generator)
        d = mmd(z, prior, self.scales, unbiased=True)
        return z, recon, d, self.recon_scale * recon + self.mmd_weight * d

    def training_loss(self, x):
        z, recon, d, loss = self._losses(x)
        return {"loss": loss, "recon": recon, "mmd": d, "z": z}

    def validation_loss(self, x):
        gen = torch.Generator().manual_seed(VALIDATION_SEED)
        z, recon, d, loss = self._losses(x, gen)
        return {"loss": loss, "objective": loss, "recon": recon, "mmd": d, "z": z}
