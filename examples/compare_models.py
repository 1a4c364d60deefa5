"""Train the AVAE and a VAE with the same data, network and settings, score both alike, compare them.

    python examples/compare_models.py [--epochs 3] [--models avae,vae] [--out runs/examples/compare_models]
"""
import argparse
from pathlib import Path

import avae

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--models", default="avae,vae", help="any of `avae models`, separated by commas")
parser.add_argument("--train-size", type=int, default=2000)
parser.add_argument("--n", type=int, default=500, help="held-out images to score")
parser.add_argument("--out", default="runs/examples/compare_models")
args = parser.parse_args()
out = Path(args.out)

# One config for every model: a run's seed fixes its training subset and batch order, so the runs
# differ only in the objective. Settings of one model alone (the AVAE's KDE set) go to that model.
shared = {
    "data": {"name": "dsprites", "train_size": args.train_size, "val_size": 500},  # rendered locally
    "model": {"latent_dim": 6, "width": 0.125},
    "train": {"epochs": args.epochs, "batch_size": 50, "lr": 1e-3, "seed": 0, "figures_every": 0, "progress": False},
}
only = {"avae": {"kde_size": 500}}

runs = []
for name in args.models.split(","):
    config = {**shared, "model": {**shared["model"], "name": name, **only.get(name, {})}}
    run_dir = avae.train(config, out=out / name)
    # Only runs evaluated alike are compared: the same n, seed and feature space for each. Small sizes
    # here (a briefly trained classifier); disentanglement scores and the VAE's log-likelihood are
    # skipped as they cost the most.
    avae.evaluate(run_dir, n=args.n, disentanglement="none", likelihood_samples=0,
                  classifier_images=2000, classifier_epochs=1, progress=False)
    runs.append(run_dir)

comparison = avae.compare(runs, out=out)  # also writes out/comparison.html: every metric, the best marked
rows = {"fd_N": "FD samples ↓", "fd_REC": "FD recon ↓", "prd_precision_N": "precision ↑",  # a few of
        "prd_recall_N": "recall ↑", "norm_ks": "KS of ‖z‖² ↓", "mse_per_pixel": "MSE/pixel ↓"}  # its metrics
print(f"{'':14}" + "".join(f"{name:>12}" for name in comparison["runs"]))
for row, label in rows.items():
    values = comparison["metrics"].get(row, [None] * len(runs))
    print(f"{label:14}" + "".join(f"{v:12.4f}" if v is not None else f"{'–':>12}" for v in values))
print("settings that differ:", ", ".join(comparison["settings"]))
print(f"written: {out / 'comparison.html'}")
