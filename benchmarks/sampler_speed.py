"""How long each sampler takes to fit 10,000 codes of dimension 16 and to draw 10,000 codes.

The codes are a fixed, seeded mixture of three anisotropic Gaussians and a ring (what a trained
encoder's codes look like to a density: lumpy, not Gaussian); every sampler is fitted with its
default settings on 9,000 of them and scored on the other 1,000, as `avae fit-sampler` does. The
machine (capability, cores, load before and after, torch build) is recorded beside the seconds.

    python benchmarks/sampler_speed.py            # all samplers whose packages are installed
    python benchmarks/sampler_speed.py --samplers gmm,flow --codes 10000 --dim 16
    → benchmarks/results/sampler_speed-<capability>.json
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import time
from pathlib import Path

import numpy as np
import torch

from avae import __version__, hardware, run, samplers

RESULTS = Path(__file__).parent / "results"
GOALS_S = {"gaussian": 10, "gmm": 10, "flow": 60, "latent_diffusion": 120}  # fit; drawing 10,000 codes: 5 s


def lumpy_codes(n: int, dim: int, seed: int) -> torch.Tensor:
    """n codes: three anisotropic Gaussian clusters and a noisy ring in the first two axes."""
    rng = np.random.default_rng(seed)
    part = rng.integers(0, 4, n)
    z = rng.standard_normal((n, dim)) * rng.uniform(0.3, 1.0, dim)
    centres = rng.standard_normal((3, dim)) * 2
    z[part < 3] += centres[part[part < 3]]
    angle = rng.uniform(0, 2 * np.pi, int((part == 3).sum()))
    z[part == 3, :2] = 3 * np.stack([np.cos(angle), np.sin(angle)], 1) + 0.1 * z[part == 3, :2]
    return torch.as_tensor(z, dtype=torch.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samplers", default="gaussian,gmm,flow,latent_diffusion")
    parser.add_argument("--codes", type=int, default=10000)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    codes = lumpy_codes(args.codes, args.dim, args.seed)
    held = int(0.1 * len(codes))
    train, heldout = codes[held:], codes[:held]
    rows, load_before = [], os.getloadavg()
    for name in samplers.parse_names(args.samplers):
        cls = samplers.sampler_class(name)
        if cls.requires and importlib.util.find_spec(cls.requires[0]) is None:
            print(f"{name}: skipped ({cls.requires[0]} is not installed)")
            continue
        sampler = cls(args.dim)
        start = time.perf_counter()
        report = sampler.fit(train, heldout, seed=args.seed)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        sampler.sample(10000, torch.Generator().manual_seed(args.seed))
        draw_s = time.perf_counter() - start
        rows.append({"sampler": name, "fit_s": fit_s, "draw_10000_s": draw_s, "fit_goal_s": GOALS_S.get(name),
                     "report": report.as_dict()})
        print(f"{name:>16}: fit {fit_s:6.1f} s (goal ≤ {GOALS_S.get(name)} s), draw 10,000 {draw_s:5.2f} s "
              f"(goal ≤ 5 s); {report.summary()}")
    facts = hardware.machine()
    out = RESULTS / f"sampler_speed-{facts['capability'].upper()}.json"
    run.write_json(out, {"command": "python benchmarks/sampler_speed.py", "codes": args.codes, "dim": args.dim,
                         "machine": facts, "load_average_before": load_before, "load_average_after": os.getloadavg(),
                         "threads": torch.get_num_threads(), "avae": __version__, "rows": rows})
    print(f"written: {out}")


if __name__ == "__main__":
    main()
