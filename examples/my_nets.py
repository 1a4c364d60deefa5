"""Networks of your own, named in a config as "my_nets:Encoder" and "my_nets:Decoder".

avae builds them as Encoder(shape=(C, H, W), out_dim=k·l, **kwargs) and
Decoder(shape=(C, H, W), latent_dim=l, **kwargs); every other keyword comes from the config.
"""
import math

from torch import nn


class Encoder(nn.Module):
    """Images (B, C, H, W) → codes (B, out_dim); out_dim is 2·l for the VAE family (mean, log-variance)."""

    def __init__(self, shape, out_dim, hidden=256):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    """Codes (B, l) → raw outputs (B, C, H, W): no final activation, the model's likelihood applies it."""

    def __init__(self, shape, latent_dim, hidden=256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, math.prod(shape)), nn.Unflatten(1, tuple(shape)))

    def forward(self, z):
        return self.net(z)
