"""Time each sample-quality and latent metric on 10,000 points.

    python benchmarks/metric_times.py      # → benchmarks/results/metric_times.json

Features are 128-d (the classifier feature space), codes 16-d (the paper's MNIST latent size);
both synthetic Gaussians, since the cost does not depend on where the vectors come from.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from avae.kde_bandwidth import bandwidth
from avae.metrics import generative, latent

RESULTS = Path(__file__).parent / "results" / "metric_times.json"


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def main(n: int = 10000) -> None:
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(n, 128)), rng.normal(0.1, 1.1, size=(n, 128))
    codes = rng.normal(size=(n, 16))
    h = bandwidth(16, 10000).h
    times = {
        "frechet_distance (128-d)": timed(generative.frechet_distance, fake, real),
        "prd (20 clusters, 1001 angles, 10 runs)": timed(generative.prd, fake, real, seed=0),
        "knn_precision_recall (k=3)": timed(generative.knn_precision_recall, real, fake, k=3),
        "density_coverage (k=5)": timed(generative.density_coverage, real, fake, k=5),
        "whitened_entropy (16-d, leave-one-out)": timed(latent.whitened_entropy, codes, h),
        "gaussian_kl (16-d)": timed(latent.gaussian_kl, codes),
        "norm_chi2_test (16-d)": timed(latent.norm_chi2_test, codes),
        "collapsed_axes (16-d)": timed(latent.collapsed_axes, codes),
    }
    result = {"n": n, "seconds": times, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "command": "python benchmarks/metric_times.py"}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    for name, seconds in times.items():
        print(f"{name:<42} {seconds:8.3f} s")


if __name__ == "__main__":
    main()
