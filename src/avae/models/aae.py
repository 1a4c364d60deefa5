"""The adversarial autoencoder (Makhzani et al. 2016) as compared in the paper: a deterministic
encoder whose codes a latent discriminator (E Table X) learns to tell from N(0, I) samples.

Encoder/decoder loss: recon_scale·recon + adv_weight·E[−log D(z)] (the non-saturating generator
loss; D(z) is the probability that z came from the prior). After every such step the
discriminator takes one step of its own Adam on 0.5·(E_p[−log D(z')] + E_q[−log(1 − D(z))]), with
z' ~ N(0, I) from torch's global CPU RNG and the codes z of that step's batch.

Discriminator optimizer: Adam lr 5e-4 (the trainer's learning rate, so the adversary keeps pace
with the encoder) and β = (0.5, 0.999), the β₁ = 0.5 that GAN discriminators usually get
(DCGAN, WAE-GAN); the paper does not give one.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch.nn import functional as F

from .base import Model, register_model
from .discriminator import Discriminated
from .regularisers import standard_normal
from ..schema import setting


@register_model
class AAE(Discriminated, Model):
    name = "aae"
    description = "adversarial autoencoder: recon_scale·recon + β·adversarial loss of a latent discriminator vs N(0,I)"

    @dataclass(frozen=True)
    class Params:
        recon_scale: float = setting(0.05, above=0)  # the paper's RECONS-SCALAR
        adv_weight: float = setting(1.0, minimum=0)  # the paper's β on the adversarial term
        disc_hidden: list = setting(factory=lambda: [1024, 1024, 1024], items={"kind": int, "minimum": 1, "maximum": 65536}, min_length=1)
        disc_lr: float = setting(5e-4, above=0)
        disc_betas: list = setting(factory=lambda: [0.5, 0.999], items={"kind": float, "minimum": 0, "below": 1}, length=2)

    def __init__(self, spec, latent_dim, arch, width, params: Params):
        super().__init__(spec, latent_dim, arch, width, params)
        self.recon_scale, self.adv_weight = params.recon_scale, params.adv_weight
        self.init_discriminator(params.disc_hidden, 1, width, params.disc_lr, params.disc_betas)

    def _losses(self, x):
        z = self.encoder(x).float()
        recon = self.likelihood.per_image(self.decoder(z), x).mean()
        adv = F.softplus(-self.frozen_discriminator(z).float()).mean()  # −log D(z)
        return z, recon, adv, self.recon_scale * recon + self.adv_weight * adv

    def training_loss(self, x):
        z, recon, adv, loss = self._losses(x)
        return {"loss": loss, "recon": recon, "adv": adv, "z": z}

    def validation_loss(self, x):
        z, recon, adv, loss = self._losses(x)
        return {"loss": loss, "objective": loss, "recon": recon, "adv": adv, "z": z}

    def after_step(self, ctx, x, losses):
        """One discriminator step on the step's codes against as many prior draws."""
        z = losses["z"].detach()
        prior = standard_normal(z.shape, z)
        real, fake = self.discriminator(prior).float(), self.discriminator(z).float()
        self.discriminator_step(0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean()), ctx)
