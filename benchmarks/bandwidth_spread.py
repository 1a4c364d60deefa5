"""The spread of the estimated h_opt over seeds (each seed draws its own centres and targets),
estimated afresh without the cache.

    python benchmarks/bandwidth_spread.py                      # l = 1, m = 10,000 and 100,000, seeds 0-2
    python benchmarks/bandwidth_spread.py -l 2 -m 1000 --seeds 0,1,2,3
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from avae import run
from avae.kde_bandwidth import bandwidth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-l", "--latent-dim", type=int, default=1)
    parser.add_argument("-m", "--kde-sizes", default="10000,100000")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bandwidth_spread.json"))
    args = parser.parse_args()
    rows = []
    for m in map(int, args.kde_sizes.split(",")):
        estimates = []
        for seed in map(int, args.seeds.split(",")):
            start = time.perf_counter()
            estimates.append(bandwidth(args.latent_dim, m, seed=seed, cache=False).h_opt)
            print(f"l={args.latent_dim} m={m} seed={seed}: h_opt {estimates[-1]:.4f} "
                  f"({time.perf_counter() - start:.1f} s)", flush=True)
        rows.append({"l": args.latent_dim, "m": m, "h_opt": estimates, "mean": sum(estimates) / len(estimates),
                     "spread": max(estimates) - min(estimates)})
    run.write_json(args.out, {"command": "python benchmarks/bandwidth_spread.py", "rows": rows,
                              "machine": {"capability": torch.backends.cpu.get_cpu_capability(),
                                          "cores": os.cpu_count(), "torch": torch.__version__}})


if __name__ == "__main__":
    main()
