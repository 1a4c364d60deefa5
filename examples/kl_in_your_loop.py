"""The AVAE's KL term in a PyTorch training loop of your own: your data, networks and optimiser.

    python examples/kl_in_your_loop.py [--epochs 10] [--latent-dim 3] [--out runs/examples/kl_in_your_loop]

The data are 16×16 images of one soft blob each (position and width vary: three factors). Replace
`images` with your own (n, ...) float tensor in [0, 1] (the decoder ends in a sigmoid).
"""
import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

import avae

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--latent-dim", type=int, default=3)
parser.add_argument("--kde-size", type=int, default=800, help="m: training images whose codes form the KDE")
parser.add_argument("--out", default="runs/examples/kl_in_your_loop")
args = parser.parse_args()
torch.set_num_threads(1)  # networks this small run fastest on one thread
torch.manual_seed(0)

n, side = 4000, 16
grid = torch.arange(side) + 0.5
cy, cx = 3 + 10 * torch.rand(2, n, 1, 1)  # centre, in pixels
r = 1.5 + 2 * torch.rand(n, 1, 1)  # width
images = torch.exp(-((grid.view(side, 1) - cy) ** 2 + (grid - cx) ** 2) / (2 * r**2))  # (n, 16, 16) in [0, 1]
data = images.flatten(1)
train, val = data[:-500], data[-500:]  # 500 held out: σ's rule and the final check

d, l, m = data.shape[1], args.latent_dim, args.kde_size
encoder = nn.Sequential(nn.Linear(d, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, l))
decoder = nn.Sequential(nn.Linear(l, 128), nn.ReLU(), nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, d), nn.Sigmoid())
kl = avae.AggregateKL(latent_dim=l, kde_size=m)  # its bandwidth h comes from (l, m) alone
optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=3e-3)


def sse(x_hat, x):  # the reconstruction cost: per-image sum of squared errors, averaged over the batch
    return (x_hat - x).pow(2).sum(1).mean()


# σ weighs reconstruction against the KL. After each epoch it follows the validation error (the AVAE's
# rule), but with a floor: three factors fit in three dimensions, so the error can fall towards 0 and
# recon/σ would then swamp the KL.
sigma, sigma_floor = 200**0.5, 1.0  # σ starts at √200, as model.sigma0_sq in `avae train`
for epoch in range(args.epochs):
    order = torch.randperm(len(train))
    kde_set, sgd = train[order[:m]], order[m:]  # a fresh KDE set each epoch, kept out of the SGD batches
    for batch in sgd.split(50):
        with torch.no_grad():  # the KDE codes are constants, re-encoded every step so they never go stale
            kde_codes = encoder(kde_set)
        x = train[batch]
        z = encoder(x)
        loss = sse(decoder(z), x) / sigma + kl(z, kde_codes)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        val_sse = float(sse(decoder(encoder(val)), val))
    sigma = max(avae.sigma_from_validation(val_sse), sigma_floor)
    print(f"epoch {epoch + 1}: validation SSE {val_sse:.3f}, σ {sigma:.3f}")

with torch.no_grad():
    fit = avae.latent_fit(encoder(val), kl.h)  # held-out codes against the sampler N(0, (1−h²)I)
    samples = decoder(kl.sample_latent(64, torch.Generator().manual_seed(0))).view(-1, *images.shape[1:])
print(f"h {kl.h:.3f}; held-out codes: KS of ‖z‖² {fit.ks_statistic:.3f}, "
      f"Gaussian KL to the sampler {fit.gaussian_kl_to_sampling_distribution:.3f} nats")
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
np.save(out / "samples.npy", samples.numpy())
print(f"written: {out / 'samples.npy'} {tuple(samples.shape)}")
