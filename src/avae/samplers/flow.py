"""`flow`: a normalizing flow on the standardised codes, from zuko (`pip install 'avae[flow]'`):
a neural spline flow (NSF, the default) or a masked autoregressive flow (MAF), trained by maximum
likelihood with early stopping on codes set aside from the training codes."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..schema import setting
from ..hardware import one_thread
from . import training
from .base import register_sampler


@register_sampler
class FlowSampler(training.NeuralSampler):
    name = "flow"
    description = "a normalizing flow (zuko) fitted to the codes"
    requires = ("zuko", "flow")
    what = "the flow"

    @dataclass(frozen=True)
    class Settings(training.TrainingSettings):
        # a step's time is mostly per-call overhead: 512 codes fitted 10,000 in 59 s against 63 s for 256, and
        # as well (benchmarks/BENCHMARKS.md, "Samplers fitted after training")
        batch_size: int = setting(512, minimum=1)
        kind: str = setting("nsf", choices=("nsf", "maf"))  # neural spline flow or masked autoregressive (affine)
        transforms: int = setting(3, minimum=1, maximum=64)  # autoregressive transforms
        hidden: int = setting(64, minimum=1)  # width of each transform's hidden layers
        layers: int = setting(2, minimum=1, maximum=16)  # hidden layers per transform
        bins: int = setting(8, minimum=2, maximum=256)  # spline bins (nsf)

    def _build(self):
        import zuko

        s = self.settings
        hidden = [s.hidden] * s.layers
        if s.kind == "nsf":
            return zuko.flows.NSF(self.latent_dim, transforms=s.transforms, hidden_features=hidden, bins=s.bins)
        return zuko.flows.MAF(self.latent_dim, transforms=s.transforms, hidden_features=hidden)

    def _loss(self):
        return lambda x, _: -self.net().log_prob(x).mean()

    @torch.no_grad()
    def sample(self, n, generator=None):
        # the flow's base is N(0, I): its noise drawn here, from the generator, then mapped back
        eps = torch.randn(self._check_n(n), self.latent_dim, generator=generator)
        with one_thread():
            x = self.net().transform.inv(eps) if n else eps
        return self.unstandardised(x)

    @torch.no_grad()
    def log_prob(self, z):
        x = self.standardised(z)
        with one_thread():
            log_p = torch.cat([self.net().log_prob(part) for part in x.split(4096)]).double()
        return log_p - torch.log(self.scale).sum()  # the change of variables of the standardisation
