"""`prior`: what the model itself samples from (its `sample_latent`): N(0, I) for most models,
N(0, (1−h²)I) for the AVAE, the Gaussian fitted to training codes for RAE and the plain
autoencoder. Nothing is fitted or saved; it is every result's default."""
from __future__ import annotations

from dataclasses import dataclass

from .base import Sampler, register_sampler


@register_sampler
class PriorSampler(Sampler):
    name = "prior"
    description = "the model's own sampler (the default)"
    fitted = False

    @dataclass(frozen=True)
    class Settings:
        pass

    def __init__(self, latent_dim: int, settings=None, model=None):
        super().__init__(latent_dim, settings)
        self.model = model

    @classmethod
    def of_model(cls, model) -> "PriorSampler":
        sampler = cls(model.latent_dim, model=model)
        sampler.description = f"the model's own: {model.sampler}"
        return sampler

    @property
    def has_density(self) -> bool:
        """A density where the model draws from the Gaussian it declares, or declares the density
        of what it draws from (other models that override sample_latent draw from something else)."""
        from ..models import Model

        kind = type(self.model)
        return kind.sample_latent is Model.sample_latent or kind.sampling_log_prob is not Model.sampling_log_prob

    def _fit(self, codes, seed):
        """Nothing to fit: the report scores the model's own sampler, the reference for the others."""

    def sample(self, n, generator=None):
        return self.model.sample_latent(n, generator)  # bitwise what the model draws

    def log_prob(self, z):
        if not self.has_density:
            return super().log_prob(z)
        return self.model.sampling_log_prob(z)

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass
