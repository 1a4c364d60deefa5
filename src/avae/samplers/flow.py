"""`flow`: a normalizing flow on the standardised codes, from zuko (`pip install 'avae[flow]'`):
a neural spline flow (NSF, the default) or a masked autoregressive flow (MAF), trained by maximum
likelihood with early stopping on codes set aside from the training codes."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..schema import setting
from . import training
from .base import Sampler, check_state, register_sampler


@register_sampler
class FlowSampler(Sampler):
    name = "flow"
    description = "a normalizing flow (zuko) fitted to the codes"
    requires = ("zuko", "flow")

    @dataclass(frozen=True)
    class Settings:
        kind: str = setting("nsf", choices=("nsf", "maf"))  # neural spline flow or masked autoregressive (affine)
        transforms: int = setting(3, minimum=1, maximum=64)  # autoregressive transforms
        hidden: int = setting(64, minimum=1)  # width of each transform's hidden layers
        layers: int = setting(2, minimum=1, maximum=16)  # hidden layers per transform
        bins: int = setting(8, minimum=2, maximum=256)  # spline bins (nsf)
        lr: float = setting(1e-3, above=0)
        batch_size: int = setting(256, minimum=1)
        max_epochs: int = setting(300, minimum=1)
        patience: int = setting(15, minimum=1)  # epochs without a better early-stopping loss before stopping
        val_fraction: float = setting(0.1, above=0, below=1)  # share of the training codes set aside for early stopping

    def __init__(self, latent_dim, settings=None):
        super().__init__(latent_dim, settings)
        self.flow = self._build()
        self.shift = torch.zeros(latent_dim, dtype=torch.float64)
        self.scale = torch.ones(latent_dim, dtype=torch.float64)

    def _build(self):
        import zuko

        s = self.settings
        hidden = [s.hidden] * s.layers
        if s.kind == "nsf":
            return zuko.flows.NSF(self.latent_dim, transforms=s.transforms, hidden_features=hidden, bins=s.bins)
        return zuko.flows.MAF(self.latent_dim, transforms=s.transforms, hidden_features=hidden)

    def _fit(self, codes, seed):
        s = self.settings
        self.shift, self.scale = training.standardisation(codes)
        fit, stop = training.split(((codes - self.shift) / self.scale).float(), s.val_fraction, seed)
        self.flow = training.seeded(self._build, seed)
        return training.fit_early_stopping(
            self.flow, lambda x, _: -self.flow().log_prob(x).mean(), fit, stop, lr=s.lr, batch_size=s.batch_size,
            max_epochs=s.max_epochs, patience=s.patience, seed=seed, what="the flow", progress=self.progress)

    @torch.no_grad()
    def sample(self, n, generator=None):
        # the flow's base is N(0, I): its noise drawn here, from the generator, then mapped back
        eps = torch.randn(self._check_n(n), self.latent_dim, generator=generator)
        with training.one_thread():
            x = self.flow().transform.inv(eps) if n else eps
        return (x.double() * self.scale + self.shift).float()

    @torch.no_grad()
    def log_prob(self, z):
        x = ((z.double() - self.shift) / self.scale).float()
        with training.one_thread():
            log_p = torch.cat([self.flow().log_prob(part) for part in x.split(4096)]).double()
        return log_p - torch.log(self.scale).sum()  # the change of variables of the standardisation

    def state_dict(self):
        return {"shift": self.shift, "scale": self.scale, **{f"flow.{k}": v for k, v in self.flow.state_dict().items()}}

    def load_state_dict(self, state):
        check_state(state, {"shift": (self.latent_dim,), "scale": (self.latent_dim,)})
        self.shift, self.scale = state["shift"].double(), state["scale"].double()
        self.flow.load_state_dict({k[len("flow."):]: v for k, v in state.items() if k.startswith("flow.")})
        self.flow.eval().requires_grad_(False)
