"""`latent_diffusion`: a small denoising diffusion model on the standardised codes
(`pip install 'avae[diffusion]'`): an MLP predicts the noise of a noised code from the code and its
timestep; the noise schedule, the noising and the ancestral (DDPM) sampling steps are diffusers'
DDPMScheduler. Trained on the denoising loss with early stopping on codes set aside from the
training codes. It has samples, not a density (the report's log-likelihood is n/a)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..schema import setting
from ..hardware import one_thread
from . import training
from .base import register_sampler

TIME_FEATURES = 16  # sine/cosine pairs of the timestep embedding
MAX_BETA = 0.999  # the largest noise variance of one step (a few timesteps would otherwise ask for more than 1)


class Denoiser(nn.Module):
    """ε̂(x_t, t): an MLP on the noised code and a sinusoidal embedding of its timestep."""

    def __init__(self, latent_dim: int, hidden: int, layers: int, timesteps: int):
        super().__init__()
        self.timesteps = timesteps
        sizes = [latent_dim + 2 * TIME_FEATURES] + [hidden] * layers
        blocks = []
        for a, b in zip(sizes, sizes[1:]):
            blocks += [nn.Linear(a, b), nn.SiLU()]
        self.net = nn.Sequential(*blocks, nn.Linear(sizes[-1], latent_dim))
        # frequencies from one cycle over all timesteps to one cycle per four timesteps
        top = math.log10(max(timesteps / 4, 1.0))
        self.register_buffer("frequencies", torch.logspace(0, top, TIME_FEATURES) * (2 * math.pi / timesteps))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        angle = t.float().unsqueeze(1) * self.frequencies
        return self.net(torch.cat([x, torch.sin(angle), torch.cos(angle)], dim=1))


@register_sampler
class LatentDiffusionSampler(training.NeuralSampler):
    name = "latent_diffusion"
    description = "a diffusion model (MLP denoiser, diffusers' DDPM schedule) fitted to the codes"
    requires = ("diffusers", "diffusion")
    has_density = False
    what = "the latent diffusion model"
    version = 2  # 1: betas not scaled to the number of timesteps

    @dataclass(frozen=True)
    class Settings(training.TrainingSettings):
        max_epochs: int = setting(1000, minimum=1)
        # epochs without a better early-stopping loss before stopping: the denoising loss flattens long before
        # the samples stop improving
        patience: int = setting(200, minimum=1)
        timesteps: int = setting(200, minimum=2, maximum=10000)  # diffusion steps (training and sampling)
        schedule: str = setting("linear", choices=("linear", "scaled_linear", "squaredcos_cap_v2"))  # diffusers beta_schedule
        hidden: int = setting(128, minimum=1)  # width of the denoiser's hidden layers
        layers: int = setting(3, minimum=1, maximum=16)  # hidden layers of the denoiser

    def _build(self) -> Denoiser:
        s = self.settings
        return Denoiser(self.latent_dim, s.hidden, s.layers, s.timesteps)

    def scheduler(self):
        """A fresh DDPM scheduler (sampling sets its steps, so each draw gets its own). diffusers' betas
        (1e-4 to 0.02) are made for 1,000 steps; at 200 the last noised code would keep 36 % of the
        code, and sampling, which starts from pure noise, would start from the wrong distribution. So
        they are scaled by 1000 / timesteps (as improved DDPM does), which leaves the last step noise."""
        from diffusers import DDPMScheduler

        scale = 1000 / self.settings.timesteps
        return DDPMScheduler(num_train_timesteps=self.settings.timesteps, beta_schedule=self.settings.schedule,
                             beta_start=1e-4 * scale, beta_end=min(0.02 * scale, MAX_BETA), clip_sample=False,
                             prediction_type="epsilon")

    def _loss(self):
        timesteps, schedule = self.settings.timesteps, self.scheduler()

        def denoising_loss(x0, generator):
            t = torch.randint(0, timesteps, (len(x0),), generator=generator)
            noise = torch.randn(x0.shape, generator=generator)
            return (self.net(schedule.add_noise(x0, noise, t), t) - noise).pow(2).mean()

        return denoising_loss

    @torch.no_grad()
    def sample(self, n, generator=None):
        x = torch.randn(self._check_n(n), self.latent_dim, generator=generator)
        if n:
            schedule = self.scheduler()
            schedule.set_timesteps(self.settings.timesteps)
            with one_thread():
                for t in schedule.timesteps:
                    eps = self.net(x, t.expand(len(x)))
                    x = schedule.step(eps, int(t), x, generator=generator).prev_sample
        return self.unstandardised(x)
