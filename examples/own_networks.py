"""Train the AVAE with an encoder and decoder of your own (examples/my_nets.py), then open the run and sample.

    python examples/own_networks.py [--epochs 1] [--hidden 256] [--out runs/examples/own_networks]
"""
import argparse

import numpy as np
import torch

import avae

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=1)
parser.add_argument("--hidden", type=int, default=256, help="width of the hidden layers of my_nets")
parser.add_argument("--train-size", type=int, default=2000)
parser.add_argument("--out", default="runs/examples/own_networks")
args = parser.parse_args()

# "module:Class" plus keyword arguments. avae imports my_nets from sys.path, which holds this script's
# folder (and the current one), and records where it came from so the run can be opened later.
config = {
    "data": {"name": "dsprites", "train_size": args.train_size, "val_size": 500},  # rendered locally
    "model": {"name": "avae", "latent_dim": 6, "kde_size": 500,
              "encoder": {"class": "my_nets:Encoder", "hidden": args.hidden},
              "decoder": {"class": "my_nets:Decoder", "hidden": args.hidden}},
    "train": {"epochs": args.epochs, "batch_size": 50, "lr": 1e-3, "figures_every": 0, "progress": False},
}
run_dir = avae.train(config, out=args.out)

# Opening the run builds my_nets' classes, i.e. runs their code: avae asks for trust_code=True.
model = avae.load(run_dir, trust_code=True)
images = model.sample(16, generator=torch.Generator().manual_seed(0))  # floats in [0, 1], (16, 1, 64, 64)
codes = model.encode(images)
print(f"sampled {tuple(images.shape)}, codes {tuple(codes.shape)}; "
      f"reconstruction error of the samples {float((model.reconstruct(images) - images).pow(2).mean()):.4f}")

# The same as `avae sample RUN_DIR -n 16 --trust-code`: uint8 images, NCHW.
samples = avae.sample(run_dir, 16, trust_code=True)
np.save(run_dir / "my_samples.npy", samples)
print(f"written: {run_dir / 'my_samples.npy'} {samples.shape} {samples.dtype}")
