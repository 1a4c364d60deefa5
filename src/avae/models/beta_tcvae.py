"""β-TCVAE (Chen et al. 2018): the KL split into index-code MI, total correlation and
dimension-wise KL, each estimated on the minibatch with minibatch-stratified sampling, and
weighted α, β, γ (the paper's baseline: α = γ = 1, β on the TC)."""
from __future__ import annotations

from dataclasses import dataclass

from . import checks
from .base import register_model
from .regularisers import tc_decomposition
from .vae import GaussianVAE


@register_model
class BetaTCVAE(GaussianVAE):
    name = "beta_tcvae"
    description = "β-TCVAE (Chen et al. 2018): α·MI + β·TC + γ·dim-KL, minibatch-stratified estimates"

    @dataclass
    class Params:
        beta: float = 2.0  # weight of the total correlation
        alpha: float = 1.0  # weight of the index-code mutual information
        gamma: float = 1.0  # weight of the dimension-wise KL

    def __init__(self, spec, latent_dim, arch, width, params: Params):
        super().__init__(spec, latent_dim, arch, width, params)
        self.alpha = checks.number(params.alpha, "alpha")
        self.beta = checks.number(params.beta, "beta")
        self.gamma = checks.number(params.gamma, "gamma")

    def regulariser(self, z, mu, logvar):
        # N for the stratified weights: the training-set size (in validation too)
        t = tc_decomposition(z, mu, logvar, self.spec.train_size)
        reg = self.alpha * t["mi"] + self.beta * t["tc"] + self.gamma * t["dim_kl"]
        return reg, t
