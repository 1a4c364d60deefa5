"""`gmm`: a Gaussian mixture with full covariances, fitted by EM (scikit-learn), K = 10 components
by default as in the RAE paper (Ghosh et al. 2020). Sampling and the density use the fitted
tensors alone."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..schema import setting
from .base import Sampler, check_state, covariance_factor, gaussian_log_prob, register_sampler


@register_sampler
class GMMSampler(Sampler):
    name = "gmm"
    description = "a Gaussian mixture with full covariances fitted to the codes"

    @dataclass(frozen=True)
    class Settings:
        k: int = setting(10, minimum=1, maximum=10000)  # components (the RAE paper's 10)
        max_iter: int = setting(100, minimum=1)  # EM iterations at most (scikit-learn's default)
        n_init: int = setting(1, minimum=1)  # EM runs from different k-means starts; the best is kept
        reg_covar: float = setting(1e-6, minimum=0)  # added to each covariance's diagonal (scikit-learn's default)

    def __init__(self, latent_dim, settings=None):
        super().__init__(latent_dim, settings)
        k, l = self.settings.k, latent_dim
        self.weights = torch.full((k,), 1 / k, dtype=torch.float64)
        self.means = torch.zeros(k, l, dtype=torch.float64)
        self.scale_trils = torch.eye(l, dtype=torch.float64).repeat(k, 1, 1)

    def min_codes(self):
        return max(2, self.settings.k)

    def _fit(self, codes, seed):
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture
        from threadpoolctl import threadpool_limits

        s = self.settings
        gm = GaussianMixture(s.k, covariance_type="full", max_iter=s.max_iter, n_init=s.n_init, reg_covar=s.reg_covar,
                             random_state=seed)
        # one thread: EM's small matrix products and k-means start are faster so (far faster on a busy machine)
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore", ConvergenceWarning)  # reported in the details instead
            gm.fit(codes.numpy())
        self.weights = torch.as_tensor(gm.weights_, dtype=torch.float64)
        self.means = torch.as_tensor(gm.means_, dtype=torch.float64)
        self.scale_trils = covariance_factor(torch.as_tensor(gm.covariances_, dtype=torch.float64))
        return {"converged": bool(gm.converged_), "iterations": int(gm.n_iter_),
                "smallest_weight": float(np.min(gm.weights_))}

    def sample(self, n, generator=None):
        n = self._check_n(n)
        component = (torch.multinomial(self.weights, n, replacement=True, generator=generator) if n
                     else torch.zeros(0, dtype=torch.long))
        eps = torch.randn(n, self.latent_dim, generator=generator, dtype=torch.float64)
        return (self.means[component] + (self.scale_trils[component] @ eps.unsqueeze(-1)).squeeze(-1)).float()

    def log_prob(self, z):
        per_component = gaussian_log_prob(z, self.means, self.scale_trils)  # (n, K)
        return torch.logsumexp(per_component + torch.log(self.weights), dim=1)

    def state_dict(self):
        return {"weights": self.weights, "means": self.means, "scale_trils": self.scale_trils}

    def load_state_dict(self, state):
        k, l = self.settings.k, self.latent_dim
        check_state(state, {"weights": (k,), "means": (k, l), "scale_trils": (k, l, l)})
        self.weights, self.means, self.scale_trils = (state[key].double() for key in ("weights", "means", "scale_trils"))

    def export_tensors(self):
        # component c ~ Categorical(weights), then codes = means[c] + scale_trils[c] @ eps, eps ~ N(0, I)
        return {"weights": self.weights.clone(), "means": self.means.clone(), "scale_trils": self.scale_trils.clone()}
