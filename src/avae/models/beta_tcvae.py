"""β-TCVAE (Chen et al. 2018): the KL split into index-code MI, total correlation and
dimension-wise KL, each estimated on the minibatch with minibatch-stratified sampling, and
weighted α, β, γ (the paper's baseline: α = γ = 1, β on the TC)."""
from __future__ import annotations

from dataclasses import dataclass

from .base import register_model
from .regularisers import tc_decomposition
from .vae import GaussianVAE
from ..schema import setting


@register_model
class BetaTCVAE(GaussianVAE):
    name = "beta_tcvae"
    description = "β-TCVAE (Chen et al. 2018): α·MI + β·TC + γ·dim-KL, minibatch-stratified estimates"

    @dataclass(frozen=True)
    class Params:
        beta: float = setting(2.0, minimum=0)  # weight of the total correlation
        alpha: float = setting(1.0, minimum=0)  # weight of the index-code mutual information
        gamma: float = setting(1.0, minimum=0)  # weight of the dimension-wise KL

    def __init__(self, spec, latent_dim, arch, width, params: Params):
        super().__init__(spec, latent_dim, arch, width, params)
        self.alpha, self.beta, self.gamma = params.alpha, params.beta, params.gamma

    def regulariser(self, z, mu, logvar):
        # N for the stratified weights: the training-set size (in validation too)
        t = tc_decomposition(z, mu, logvar, self.spec.train_size)
        reg = self.alpha * t["mi"] + self.beta * t["tc"] + self.gamma * t["dim_kl"]
        return reg, t
