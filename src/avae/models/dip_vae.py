"""DIP-VAE-I (Kumar et al. 2018): the VAE plus a penalty pulling the covariance of the encoder
means over the batch towards the identity."""
from __future__ import annotations

from dataclasses import dataclass

from .base import register_model
from .regularisers import dip_penalty, gaussian_kl
from .vae import GaussianVAE
from ..schema import setting


@register_model
class DIPVAE(GaussianVAE):
    name = "dip_vae"
    description = "DIP-VAE-I (Kumar et al. 2018): VAE + λ_od·Σoff-diag² + λ_d·Σ(diag−1)² of Cov[μ(x)]"

    @dataclass(frozen=True)
    class Params:
        lambda_od: float = setting(10.0, minimum=0)  # off-diagonal weight
        lambda_d: float = setting(100.0, minimum=0)  # diagonal weight (DIP-VAE-I: 10·λ_od)

    def __init__(self, spec, latent_dim, arch, width, params: Params):
        super().__init__(spec, latent_dim, arch, width, params)
        self.lambda_od, self.lambda_d = params.lambda_od, params.lambda_d

    def regulariser(self, z, mu, logvar):
        kl = gaussian_kl(mu, logvar).mean()
        dip = dip_penalty(mu, self.lambda_od, self.lambda_d)
        return kl + dip, {"kl": kl, "dip": dip}
