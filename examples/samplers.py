"""Fit densities to a trained autoencoder's codes (samplers), draw images from them and score each.

    python examples/samplers.py [--model rae] [--epochs 3] [--k 10] [--out runs/examples/samplers]

A deterministic autoencoder (rae, ae) has no prior of its own: its `prior` is a Gaussian fitted to
its training codes, so `gaussian` scores much as `prior` does. A mixture can follow the codes' shape
more closely (a lower sliced KS); any model takes the same samplers.
"""
import argparse

import numpy as np

import avae
from avae import samplers

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", default="rae", help="any of `avae models`")
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--k", type=int, default=10, help="components of the Gaussian mixture")
parser.add_argument("--train-size", type=int, default=2000)
parser.add_argument("--n", type=int, default=500, help="held-out images to score, and samples per sampler")
parser.add_argument("--out", default="runs/examples/samplers")
args = parser.parse_args()

run_dir = avae.train({
    "data": {"name": "dsprites", "train_size": args.train_size, "val_size": 500},  # rendered locally
    "model": {"name": args.model, "latent_dim": 6, "width": 0.125},
    "train": {"epochs": args.epochs, "batch_size": 50, "lr": 1e-3, "figures_every": 0, "progress": False},
}, out=args.out)

# As `avae fit-sampler RUN_DIR --sampler NAME --set k=...`: fitted to the codes of up to `codes` training
# images, scored on a held-out 10% of them, and saved as RUN_DIR/samplers/NAME-last.pt.
for name, settings in (("gaussian", {}), ("gmm", {"k": args.k})):
    fitted = samplers.fit_sampler(run_dir, name, settings, codes=args.train_size, seed=0)
    print(f"{name}: {fitted.report.summary()}")

# Images from the mixture (uint8, NCHW), as `avae sample RUN_DIR --sampler gmm -n 64`.
images = avae.sample(run_dir, 64, sampler="gmm")
np.save(run_dir / "gmm_samples.npy", images)
print(f"written: {run_dir / 'gmm_samples.npy'} {images.shape}")

# One evaluation scores the model's own samples and each sampler's, decoded into the same feature space
# (a classifier trained briefly here; the defaults train it on 10,000 images for 3 epochs).
results = avae.evaluate(run_dir, n=args.n, samplers="prior,gaussian,gmm", disentanglement="none",
                        classifier_images=2000, classifier_epochs=1, progress=False)
for name, scores in results["samplers"].items():
    fit = scores["latent_fit"]
    print(f"sampler {name:8}  Fréchet distance of samples {scores['sample_quality']['frechet_distance']:8.3f}  "
          f"sliced KS to held-out codes {fit['sliced_ks']:.4f}")
print(f"written: {run_dir / 'evaluate.json'} and {run_dir / 'evaluate.html'}")
