"""RAE-L2 (Ghosh et al. 2020): a deterministic autoencoder with the code penalty β·½‖z‖² and an
L2 penalty λ·Σ‖W‖² on the decoder's weights, added to the loss (so it is part of the objective the
trainer's Adam minimises, not Adam's decoupled weight decay). It samples from a Gaussian (mean
and full covariance) fitted to training codes after every epoch, as the paper does ex post."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .autoencoder import FittedGaussianSampler
from .base import Model, register_model
from .regularisers import code_l2, weight_l2
from ..schema import setting


@register_model
class RAE(FittedGaussianSampler, Model):
    name = "rae"
    description = "RAE-L2: recon + β·½‖z‖² + λ·‖decoder weights‖², sampled from a Gaussian fitted to codes"

    @dataclass(frozen=True)
    class Params:
        code_weight: float = setting(1e-4, minimum=0)  # β
        decoder_l2: float = setting(1e-7, minimum=0)  # λ

    def __init__(self, spec, latent_dim, arch, width, params: Params):
        super().__init__(spec, latent_dim, arch, width, params)
        self.code_weight, self.decoder_l2 = params.code_weight, params.decoder_l2
        self.register_buffer("code_mean", torch.zeros(latent_dim, dtype=torch.float64))
        self.register_buffer("code_cov", torch.eye(latent_dim, dtype=torch.float64))

    def _losses(self, x):
        z = self.encoder(x).float()
        recon = self.likelihood.per_image(self.decoder(z), x).mean()
        code, dec = code_l2(z), weight_l2(self.decoder)
        return z, recon, code, dec, recon + self.code_weight * code + self.decoder_l2 * dec

    def training_loss(self, x):
        z, recon, code, dec, loss = self._losses(x)
        return {"loss": loss, "recon": recon, "code_l2": code, "decoder_l2": dec, "z": z}

    def validation_loss(self, x):
        z, recon, code, dec, loss = self._losses(x)
        return {"loss": loss, "objective": loss, "recon": recon, "code_l2": code, "decoder_l2": dec, "z": z}

    def on_validation_end(self, ctx, val):
        self.fit_sampler(ctx)
