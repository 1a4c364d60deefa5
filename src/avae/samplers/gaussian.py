"""`gaussian`: one Gaussian with the codes' mean and full (unbiased) covariance, for any model."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Sampler, check_state, covariance_factor, gaussian_log_prob, register_sampler


@register_sampler
class GaussianSampler(Sampler):
    name = "gaussian"
    description = "a full-covariance Gaussian fitted to the codes"

    @dataclass(frozen=True)
    class Settings:
        pass

    def __init__(self, latent_dim, settings=None):
        super().__init__(latent_dim, settings)
        self.mean = torch.zeros(latent_dim, dtype=torch.float64)
        self.scale_tril = torch.eye(latent_dim, dtype=torch.float64)

    def _fit(self, codes, seed):
        self.mean = codes.mean(0)
        self.scale_tril = covariance_factor(torch.cov(codes.T).reshape(self.latent_dim, self.latent_dim))

    def sample(self, n, generator=None):
        eps = torch.randn(self._check_n(n), self.latent_dim, generator=generator, dtype=torch.float64)
        return (self.mean + eps @ self.scale_tril.T).float()

    def log_prob(self, z):
        return gaussian_log_prob(z, self.mean, self.scale_tril)

    def state_dict(self):
        return {"mean": self.mean, "scale_tril": self.scale_tril}

    def load_state_dict(self, state):
        l = self.latent_dim
        check_state(state, {"mean": (l,), "scale_tril": (l, l)})
        self.mean, self.scale_tril = state["mean"].double(), state["scale_tril"].double()

    def export_tensors(self):
        # the format of the model's own sampler.pt: codes = mean + eps @ scale_tril.T, eps ~ N(0, I)
        return {"mean": self.mean.clone(), "scale_tril": self.scale_tril.clone()}
