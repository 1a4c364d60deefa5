"""The plain deterministic autoencoder: the AVAE's network with the reconstruction loss alone.

It is the floor the AVAE's training cost is compared with, and it samples from a Gaussian fitted
to its training codes (as RAE does), refitted after every epoch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .base import Model, register_model

FIT_CODES = 10000  # training codes used to fit the sampling Gaussian


class FittedGaussianSampler:
    """Mixin: draw codes from N(mean, cov) fitted to training codes after each epoch."""

    sampler = "Gaussian fitted to training codes (mean and full covariance)"

    def fit_sampler(self, ctx):
        n = min(FIT_CODES, len(ctx.train_images))
        idx = ctx.rng(1).choice(len(ctx.train_images), n, replace=False)
        z = ctx.encode_images(ctx.train_images, np.sort(idx)).double()
        self.code_mean.copy_(z.mean(0))
        self.code_cov.copy_(torch.cov(z.T).reshape(self.latent_dim, self.latent_dim))

    def sampling_gaussian(self):
        # small jitter keeps the factorisation defined when a code axis has collapsed
        chol = torch.linalg.cholesky(self.code_cov.cpu() + 1e-9 * torch.eye(self.latent_dim, dtype=torch.float64))
        return self.code_mean.cpu(), chol

    @property
    def latent_variance(self):
        return float(torch.diagonal(self.code_cov).mean())

    @property
    def sampling_distribution(self):
        return self.code_mean.cpu(), self.code_cov.cpu()


@register_model
class Autoencoder(FittedGaussianSampler, Model):
    name = "ae"
    description = "plain deterministic autoencoder (reconstruction only), sampled from a fitted Gaussian"

    @dataclass(frozen=True)
    class Params:
        pass

    def __init__(self, spec, latent_dim, arch, width, params):
        super().__init__(spec, latent_dim, arch, width, params)
        self.register_buffer("code_mean", torch.zeros(latent_dim, dtype=torch.float64))
        self.register_buffer("code_cov", torch.eye(latent_dim, dtype=torch.float64))

    def training_loss(self, x):
        z = self.encoder(x)
        recon = self.likelihood.per_image(self.decoder(z), x).mean()
        return {"loss": recon, "recon": recon, "z": z}

    def validation_loss(self, x):
        z = self.encoder(x)
        recon = self.likelihood.per_image(self.decoder(z), x).mean()
        return {"loss": recon, "objective": recon, "recon": recon, "z": z}

    def on_validation_end(self, ctx, val):
        self.fit_sampler(ctx)
