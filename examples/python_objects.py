"""Train on images and networks you already hold in Python: a tensor of images, a torch Dataset with
labels, and an encoder and decoder as nn.Module instances, as in your own code.

    python examples/python_objects.py [--epochs 2] [--out runs/examples/python_objects]
"""
import argparse

import numpy as np
import torch
from torch import nn

import avae

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--out", default="runs/examples/python_objects")
args = parser.parse_args()


class Encoder(nn.Module):  # any module mapping (B, 1, 32, 32) to (B, latent_dim) works for the AVAE
    def __init__(self, latent_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 256), nn.ReLU(), nn.Linear(256, latent_dim))

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):  # codes (B, latent_dim) to raw outputs (B, 1, 32, 32); avae applies the sigmoid
    def __init__(self, latent_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, 256), nn.ReLU(), nn.Linear(256, 32 * 32),
                                 nn.Unflatten(1, (1, 32, 32)))

    def forward(self, z):
        return self.net(z)


class Blobs(torch.utils.data.Dataset):
    """(image, label) items, as torchvision datasets give them: a bright disc (label 0) or square (1)."""

    def __init__(self, n: int, seed: int):
        rng = np.random.default_rng(seed)
        self.labels = rng.integers(0, 2, n)
        y, x = np.mgrid[:32, :32]
        centres, radii = rng.uniform(10, 22, (n, 2)), rng.uniform(4, 8, n)
        dy, dx = y - centres[:, :1, None], x - centres[:, 1:, None]
        disc = dy**2 + dx**2 < radii[:, None, None] ** 2
        square = np.maximum(abs(dy), abs(dx)) < radii[:, None, None]
        self.images = torch.from_numpy(np.where(self.labels[:, None, None] == 0, disc, square)).float()[:, None]

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


train, val = Blobs(3000, seed=0), Blobs(500, seed=1)
config = {"model": {"name": "avae", "latent_dim": 4, "kde_size": 500},
          "train": {"epochs": args.epochs, "batch_size": 50, "lr": 1e-3, "figures_every": 0, "progress": False}}
# the run records the images' shapes and hash (never the images) and keeps the networks, with their code
run_dir = avae.train(config, out=args.out, data=train, val_data=val, encoder=Encoder(4), decoder=Decoder(4))

# Evaluating (or resuming) needs the same images again; opening the networks runs their code.
results = avae.evaluate(run_dir, data=train, val_data=val, trust_code=True, n=500, disentanglement="none",
                        likelihood_samples=0, progress=False)
print(f"feature space: {results['feature_space']['name']} (the labels train it)")
print(f"Fréchet distance of samples: {results['sample_quality']['N']['frechet_distance']:.2f}")
samples = avae.load(run_dir, trust_code=True).sample(8)  # opens from any folder: the networks are in the run
print(f"sampled {tuple(samples.shape)}")
