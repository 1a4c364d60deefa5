"""Time each disentanglement metric, default and fast presets, with a cheap representation.

Ground truth: `SyntheticFactors` on the dSprites grid (3, 6, 40, 32, 32), so the classifiers see
dSprites' class counts; the representation is a cheap deterministic function of the factors
(d = 10, disentanglement_lib's latent size): the standardised factors mixed into a 5-D subspace,
plus per-image pseudo-noise. So the times are the metrics' own overhead (sampling, statistics,
sklearn fits); with a real encoder add `num_encoded` ÷ its throughput (images/s), and the cost of
rendering the images. Writes benchmarks/results/metric_times_disentangle.json.

    python benchmarks/metric_times_disentangle.py        # all metrics, both presets (≈ 9 min, 6 of them DCI)
    python benchmarks/metric_times_disentangle.py --presets fast --metrics mig dci
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from avae import __version__
from avae.metrics import disentangle as dis

RESULTS = Path(__file__).parent / "results" / "metric_times_disentangle.json"
FACTOR_SIZES = (3, 6, 40, 32, 32)  # dSprites without its constant colour factor
LATENT = 10
WARM_UP = {"beta_vae": {"num_train": 50, "num_eval": 20}, "factor_vae": {"num_train": 50, "num_eval": 20},
           "mig": {"num_train": 500}, "dci": {"num_train": 100, "num_test": 50},
           "sap": {"num_train": 100, "num_test": 50},
           "pca_factor_vae": {"images_per_vote": 64, "num_train": 20, "num_eval": 10},
           "pca_mig": {"images_per_vote": 64, "num_votes": 20, "num_train": 500}}


def make_represent(data: dis.SyntheticFactors):
    """Codes (n, 10): the 5 standardised factors mixed into a 5-D subspace, plus small per-image jitter
    (0.05) everywhere and unit-variance per-image pseudo-noise in the 5 unused directions."""
    sizes = np.asarray(data.factor_sizes, dtype=np.float64)
    mix = np.random.default_rng(0).normal(size=(len(sizes), LATENT)) / np.sqrt(len(sizes))
    unused = np.eye(LATENT) - np.linalg.pinv(mix) @ mix  # projector on the complement of the factor subspace
    freq = np.random.default_rng(1).uniform(0.5, 1.5, size=(2, LATENT))

    def represent(images):
        classes = data.read_factors(images)
        index = data.index_of(classes)[:, None].astype(np.float64)
        z = (classes - (sizes - 1) / 2) / np.sqrt((sizes**2 - 1) / 12) @ mix
        return z + 0.05 * np.sin(index * freq[0]) + np.sqrt(2) * np.sin(index * freq[1] + 1.0) @ unused

    return represent


def headline(result: dict) -> dict:
    keys = ("score", "train_accuracy", "eval_accuracy", "num_active_dims", "mig", "disentanglement",
            "completeness", "informativeness_test", "sap", "min_angle_deg", "not_converged")
    return {k: result[k] for k in keys if k in result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", nargs="+", default=list(dis.METRICS), choices=list(dis.METRICS))
    parser.add_argument("--presets", nargs="+", default=["fast", "default"], choices=list(dis.PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    data = dis.SyntheticFactors(FACTOR_SIZES, ("shape", "scale", "orientation", "pos_x", "pos_y"))
    represent = make_represent(data)
    for name in args.metrics:  # warm-up (imports, first sklearn fits) outside the timings
        dis.METRICS[name](data, represent, args.seed, **WARM_UP.get(name, {}))
    times: dict[str, dict] = {}
    for preset in args.presets:
        times[preset] = {}
        for name in args.metrics:
            start = time.perf_counter()
            result = dis.METRICS[name](data, represent, args.seed, preset=preset)
            seconds = time.perf_counter() - start
            params = {k: v for k, v in result["params"].items() if k not in ("preset", "seed", "sklearn")}
            times[preset][name] = {"seconds": round(seconds, 2), "num_encoded": result["num_encoded"],
                                   "params": params, **headline(result)}
            print(f"{preset:<8} {name:<15} {seconds:8.2f} s  {result['num_encoded']:>11,} encodings  "
                  f"score {result['score']:.4f}", flush=True)

    import sklearn

    output = {
        "setting": (f"SyntheticFactors grid {FACTOR_SIZES} (dSprites sizes), d = {LATENT}, cheap deterministic "
                    "represent (standardised factors mixed into 5 of 10 dims + 0.05 per-image jitter, unit per-image "
                    "noise in the other 5 dims); times exclude any real encoder and any image rendering"),
        "seed": args.seed,
        "times": times,
        "machine": {"cpu_threads": torch.get_num_threads(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "numpy": np.__version__, "sklearn": sklearn.__version__,
                    "torch": torch.__version__, "avae": __version__},
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.exists() and (args.metrics != list(dis.METRICS) or args.presets != ["fast", "default"]):
        args.out = args.out.with_name(args.out.stem + "_partial.json")  # never overwrite the full run with a part
    args.out.write_text(json.dumps(output, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
