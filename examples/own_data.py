"""Train and score the AVAE on images of your own, held in a NumPy array (the `array` dataset).

    python examples/own_data.py [--data my_images.npz] [--epochs 10] [--out runs/examples/own_data]

Without --data it makes a toy set: 32×32 greyscale discs, squares and rings at random places and
sizes, labelled 0, 1, 2. Your own file: a .npz with `images` (N, H, W[, C]) uint8 or floats in [0, 1]
and, optionally, integer `labels` (N,); or a .npy of images alone.
"""
import argparse
from pathlib import Path

import numpy as np

import avae

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", help="your .npz/.npy file (default: a toy set, written beside --out)")
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--n", type=int, default=500, help="held-out images to score")
parser.add_argument("--out", default="runs/examples/own_data")
args = parser.parse_args()
out = Path(args.out)


def toy_shapes(n, side=32, seed=0):
    """n uint8 images (n, side, side) of one white shape each, and its class (n,)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side] + 0.5
    labels = rng.integers(0, 3, n)
    cy, cx = rng.uniform(9, side - 9, (2, n, 1, 1))
    r = rng.uniform(4, 8, (n, 1, 1))
    dist = np.hypot(yy - cy, xx - cx)
    square = np.maximum(abs(yy - cy), abs(xx - cx)) < r
    shapes = np.stack([dist < r, square, (dist < r) & (dist > r - 2.5)])  # disc, square, ring
    return (255 * shapes[labels, np.arange(n)]).astype(np.uint8), labels


if args.data:
    data_file = Path(args.data)
else:
    images, labels = toy_shapes(3000)
    data_file = out.parent / f"{out.name}-data.npz"  # outside the run directory, which must be new or empty
    data_file.parent.mkdir(parents=True, exist_ok=True)
    np.savez(data_file, images=images, labels=labels)  # labels give evaluation a classifier's feature space

# data.root is the array file itself; 10% of it is drawn for validation (data.options.val_fraction).
# The KDE set (model.kde_size) must be smaller than the training split.
run_dir = avae.train({
    "data": {"name": "array", "root": str(data_file)},
    "model": {"name": "avae", "latent_dim": 6, "width": 0.25, "kde_size": 500},
    "train": {"epochs": args.epochs, "batch_size": 50, "lr": 1e-3, "figures_every": 0, "progress": False},
}, out=out)

# Scores on held-out images (evaluate.json and evaluate.html in the run); a small classifier trained
# on the labels is the feature space of the Fréchet distances.
results = avae.evaluate(run_dir, n=args.n, progress=False)
quality, latent = results["sample_quality"], results["latent_quality"]
space = results["feature_space"]
accuracy = space.get("test_accuracy")  # only where a classifier was trained
print(f"feature space: {space['name']}" + (f" (classifier test accuracy {accuracy[0]:.3f})" if accuracy else ""))
for name, what in (("REC", "reconstructions"), ("INT", "interpolations"), ("N", "samples")):
    print(f"Fréchet distance of {what} ({name}): {quality[name]['frechet_distance']:.3f}")
entropy = latent["entropy"]
print(f"latent entropy {entropy['entropy']:.3f} (N(0, I) codes: {entropy['gaussian_reference']:.3f}); "
      f"KS of ‖z‖² against the sampler {latent['norm_chi2_test']['ks_statistic']:.3f}")
print(f"written: {run_dir / 'evaluate.json'} and {run_dir / 'evaluate.html'}")
