"""Latent-space discriminators (FactorVAE, AAE) trained in the same loop, with their own Adam.

The trainer's optimizer holds only the encoder and decoder parameters. A model with a
discriminator keeps it as the submodule `discriminator` (so its weights are in the model's
state_dict) and its optimizer as `disc_optimizer` (its state goes through extra_state), and
takes one discriminator step in `after_step` (its gradients averaged over ranks under torchrun). The encoder's loss sees the discriminator through
`frozen_discriminator`, which uses detached weights: the main backward pass leaves no gradient
on the discriminator and the discriminator step never reaches the encoder.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call


LEAKY_SLOPE = 0.2  # LeakyReLU slope of both discriminators (Kim & Mnih; Table X leaves it open)


def mlp(in_dim: int, hidden, out_dim: int, width: float = 1.0) -> nn.Sequential:
    """in_dim → hidden… (LeakyReLU 0.2) → out_dim logits; `width` scales the hidden layers as
    model.width scales the encoder and decoder. Glorot weights, zero biases (as nets.py)."""
    layers, prev = [], in_dim
    for h in hidden:
        h = max(1, int(round(h * width)))
        layers += [nn.Linear(prev, h), nn.LeakyReLU(LEAKY_SLOPE)]
        prev = h
    layers.append(nn.Linear(prev, out_dim))
    net = nn.Sequential(*layers)
    for m in net.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return net


class Discriminated:
    """Mixin for a Model with a latent discriminator and its own optimizer."""

    def init_discriminator(self, hidden, out_dim: int, width: float, lr, betas) -> None:
        self.discriminator = mlp(self.latent_dim, hidden, out_dim, width)
        self.disc_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=tuple(betas))
        self.disc_loss_sum, self.disc_steps = 0.0, 0

    def frozen_discriminator(self, z: torch.Tensor) -> torch.Tensor:
        """The discriminator's output with its weights treated as constants (gradients reach z only)."""
        params = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        return functional_call(self.discriminator, params, (z,))

    def discriminator_step(self, loss: torch.Tensor, ctx=None) -> None:
        """One Adam step of the discriminator on `loss`; under torchrun its gradients are averaged
        over the ranks first (the trainer's DistributedDataParallel covers only the autoencoder)."""
        self.disc_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if ctx is not None:
            ctx.dist.average_gradients(self.discriminator.parameters())
        self.disc_optimizer.step()
        self.disc_loss_sum += float(loss.detach())
        self.disc_steps += 1

    def epoch_summary(self) -> dict:
        out = {"disc_loss": self.disc_loss_sum / max(self.disc_steps, 1)}
        self.disc_loss_sum, self.disc_steps = 0.0, 0
        return out

    def extra_state(self) -> dict:
        return {"disc_optimizer": self.disc_optimizer.state_dict(),
                "disc_loss_sum": self.disc_loss_sum, "disc_steps": self.disc_steps}

    def load_extra_state(self, state: dict) -> None:
        self.disc_optimizer.load_state_dict(state["disc_optimizer"])
        self.disc_loss_sum, self.disc_steps = state["disc_loss_sum"], state["disc_steps"]
