"""Training a neural sampler (flow, latent_diffusion): standardised codes, Adam on mini-batches,
and early stopping on codes set aside from the training codes (never the held-out codes that the
fit report scores)."""
from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import AvaeError
from ..hardware import one_thread
from ..schema import setting
from .base import Sampler, _stream, check_state


def standardisation(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(shift, scale) per axis (float64): the codes' mean and standard deviation (1 on a collapsed axis)."""
    std = codes.std(0)
    return codes.mean(0), torch.where(std > 1e-12, std, torch.ones_like(std))


def seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """A network whose initial weights come from `seed`; torch's global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_stream(seed, 3))
        return build()


def split(codes: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes to fit, codes for early stopping): a seeded random `fraction` set aside."""
    n_stop = max(1, round(fraction * len(codes)))
    if len(codes) - n_stop < 2:
        raise AvaeError(f"{len(codes)} training codes leave too few to fit after setting {n_stop} aside for early "
                        "stopping; give more codes (--codes) or a smaller val_fraction")
    order = np.random.default_rng(_stream(seed, 4)).permutation(len(codes))
    return codes[order[n_stop:]], codes[order[:n_stop]]


def fit_early_stopping(net: nn.Module, loss: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
                       fit: torch.Tensor, stop: torch.Tensor, *, lr: float, batch_size: int, max_epochs: int,
                       patience: int, seed: int, what: str, progress: bool = False) -> dict:
    """Adam on `loss` over mini-batches of `fit`, for at most `max_epochs`, stopping after `patience`
    epochs without a lower loss on `stop`; the weights of the best epoch are kept. `loss(batch,
    generator)` draws its noise from `generator` (the same noise on `stop` every epoch)."""
    from tqdm import tqdm

    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    order = torch.Generator().manual_seed(_stream(seed, 5))
    best, best_epoch, best_state = math.inf, 0, copy.deepcopy(net.state_dict())
    bar = tqdm(range(1, max_epochs + 1), desc=f"fitting {what}", leave=False, file=sys.stderr, disable=not progress)
    epoch = 0
    with one_thread():
        for epoch in bar:
            net.train()
            for idx in torch.randperm(len(fit), generator=order).split(batch_size):
                value = loss(fit[idx], order)
                optimizer.zero_grad()
                value.backward()
                optimizer.step()
            net.eval()
            with torch.no_grad():
                noise = torch.Generator().manual_seed(_stream(seed, 6))
                value = sum(float(loss(part, noise)) * len(part) for part in stop.split(4096)) / len(stop)
            if not math.isfinite(value):
                raise AvaeError(f"fitting {what} diverged (a non-finite loss at epoch {epoch}); lower its lr setting")
            if value < best:
                best, best_epoch, best_state = value, epoch, copy.deepcopy(net.state_dict())
            bar.set_postfix(stop_loss=f"{value:.4f}", best=best_epoch)
            if epoch - best_epoch >= patience:
                break
    bar.close()
    net.load_state_dict(best_state)
    net.eval().requires_grad_(False)
    return {"epochs": epoch, "best_epoch": best_epoch, "early_stopping_loss": best,
            "stopped_early": epoch < max_epochs, "codes_fit": len(fit), "codes_early_stopping": len(stop)}


@dataclass(frozen=True)
class TrainingSettings:
    """The settings every neural sampler trains with (a sampler's own Settings extend them)."""

    lr: float = setting(1e-3, above=0)
    batch_size: int = setting(256, minimum=1)
    max_epochs: int = setting(300, minimum=1)
    patience: int = setting(15, minimum=1)  # epochs without a better early-stopping loss before stopping
    val_fraction: float = setting(0.1, above=0, below=1)  # share of the training codes set aside for early stopping


class NeuralSampler(Sampler):
    """A network trained on the standardised codes with early stopping (`flow`, `latent_diffusion`):
    a subclass builds its network (`_build`) and gives its training loss (`_loss`); fitting,
    standardising and the state are shared."""

    what: ClassVar[str] = ""  # the network, as messages name it

    def __init__(self, latent_dim, settings=None):
        super().__init__(latent_dim, settings)
        self.net = self._build()
        self.shift = torch.zeros(latent_dim, dtype=torch.float64)
        self.scale = torch.ones(latent_dim, dtype=torch.float64)

    def _build(self) -> nn.Module:
        raise NotImplementedError

    def _loss(self) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
        """loss(batch of standardised codes, generator) of the network `self.net` being trained."""
        raise NotImplementedError

    def _fit(self, codes, seed):
        s = self.settings
        self.shift, self.scale = standardisation(codes)
        fit, stop = split(self.standardised(codes), s.val_fraction, seed)
        self.net = seeded(self._build, seed)
        return fit_early_stopping(self.net, self._loss(), fit, stop, lr=s.lr, batch_size=s.batch_size,
                                  max_epochs=s.max_epochs, patience=s.patience, seed=seed, what=self.what,
                                  progress=self.progress)

    def standardised(self, z: torch.Tensor) -> torch.Tensor:
        return ((z.double() - self.shift) / self.scale).float()

    def unstandardised(self, x: torch.Tensor) -> torch.Tensor:
        return (x.double() * self.scale + self.shift).float()

    def state_dict(self):
        return {"shift": self.shift, "scale": self.scale, **{f"net.{k}": v for k, v in self.net.state_dict().items()}}

    def load_state_dict(self, state):
        check_state(state, {"shift": (self.latent_dim,), "scale": (self.latent_dim,)})
        self.shift, self.scale = state["shift"].double(), state["scale"].double()
        self.net.load_state_dict({k[len("net."):]: v for k, v in state.items() if k.startswith("net.")})
        self.net.eval().requires_grad_(False)
