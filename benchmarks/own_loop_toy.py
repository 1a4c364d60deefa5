"""The own-loop recipe of docs/python-api.md ("The AVAE in your own loop") on 2-D toy data: which settings decide
whether the codes reach the sampler N(0, (1−h²)I).

Two data sets, 2,000 points each (1,800 train, 200 validation), standardised: a noisy ring (radius 1,
radial noise 10 %) and a mixture of three Gaussians (std 0.4, centres at radius 2, 120° apart). Each
row trains the loop with one set of choices from five seeds and scores the codes of 4,000 fresh points
of the same distribution with `avae.latent_fit`: KS is the Kolmogorov–Smirnov distance of ‖z‖²/(1−h²)
to χ²_2 (4,000 true samples give ≈ 0.014), KL the Gaussian-fit KL to N(0, (1−h²)I) in nats.

The row "readme" runs the README's code block itself (its data lines swapped for the toy set); the other
rows run the same loop with one or more of its choices changed (the old recipe: one hidden layer of 64,
re-encoding every 10 steps, no σ floor, m = 200).

    python benchmarks/own_loop_toy.py      # writes benchmarks/results/own_loop_toy.json (4–5 minutes on 2 cores)
"""
from __future__ import annotations

import contextlib
import io
import math
import re
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import avae
from avae import hardware, run

README = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"  # where the recipe is written
SEEDS = range(5)
HELD_OUT = 4000
OLD = {"depth": 1, "every": 10, "sigma_min": 0.0, "m": 200, "lr": 3e-3, "epochs": 30}
NEW = {"depth": 2, "every": 1, "sigma_min": 1.0, "m": 800, "lr": 3e-3, "epochs": 30}
VARIANTS = {  # name: the loop's choices
    "old recipe, 3 epochs (the README before)": OLD | {"epochs": 3},
    "old recipe": OLD,
    "old + two hidden layers": OLD | {"depth": 2},
    "old + two hidden layers + every step": OLD | {"depth": 2, "every": 1},
    "old + two hidden layers + σ floor 1": OLD | {"depth": 2, "sigma_min": 1.0},
    "old + two hidden layers + every step + σ floor 1": OLD | {"depth": 2, "every": 1, "sigma_min": 1.0},
    "new recipe (the README's loop)": NEW,
    "new, no σ floor": NEW | {"sigma_min": 0.0},
    "new, σ floor 0.3": NEW | {"sigma_min": 0.3},
    "new, σ floor 3": NEW | {"sigma_min": 3.0},
    "new, re-encode every 10 steps": NEW | {"every": 10},
    "new, m = 200": NEW | {"m": 200},
    "new, m = 50": NEW | {"m": 50},
    "new, one hidden layer": NEW | {"depth": 1},
    "new, lr 5e-4, re-encode every step": NEW | {"lr": 5e-4},
    "new, lr 5e-4, re-encode every 10 steps": NEW | {"lr": 5e-4, "every": 10},
}


def ring(n: int, gen: torch.Generator) -> torch.Tensor:
    angle = 2 * math.pi * torch.rand(n, generator=gen)
    radius = 1 + 0.1 * torch.randn(n, 1, generator=gen)
    return torch.stack([angle.cos(), angle.sin()], 1) * radius


def three_gaussians(n: int, gen: torch.Generator) -> torch.Tensor:
    angles = torch.tensor([90.0, 210.0, 330.0]) * math.pi / 180
    centres = 2 * torch.stack([angles.cos(), angles.sin()], 1)
    return centres[torch.randint(0, 3, (n,), generator=gen)] + 0.4 * torch.randn(n, 2, generator=gen)


DATASETS = {"ring": ring, "three_gaussians": three_gaussians}


def toy(name: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """2,000 training points and 4,000 held-out points of one toy set, standardised alike."""
    data = DATASETS[name](2000 + HELD_OUT, torch.Generator().manual_seed(1000 + seed))
    data = (data - data[:2000].mean(0)) / data[:2000].std(0)
    return data[:2000], data[2000:]


def readme_block() -> str:
    section = README.read_text().split("The AVAE in your own loop", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def run_readme(data: torch.Tensor, seed: int) -> dict:
    """The README's own-loop block with its data lines replaced by `data` and its seed by `seed`: its namespace."""
    head, anchor, tail = readme_block().partition("data = (data - data.mean(0)) / data.std(0)\n")
    imports = "".join(line + "\n" for line in head.splitlines() if line.startswith(("import ", "from ")))
    namespace = {"toy_data": data}
    with contextlib.redirect_stdout(io.StringIO()):  # its own report of the fit
        exec(f"{imports}torch.manual_seed({seed})\ndata = toy_data\n{anchor}{tail}", namespace)  # noqa: S102
    return namespace


def run_loop(data: torch.Tensor, seed: int, *, depth: int, every: int, sigma_min: float, m: int, lr: float,
             epochs: int) -> dict:
    """The README's loop with its choices as arguments (the same statements in the same order)."""
    torch.manual_seed(seed)
    data = (data - data.mean(0)) / data.std(0)
    train, val = data[:1800], data[1800:]
    d, l = data.shape[1], 2

    def mlp(a, b):  # layers made in order, so the README's settings draw the README's initial weights
        layers = [nn.Linear(a, 64), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(64, 64), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(64, b))

    encoder, decoder = mlp(d, l), mlp(l, d)
    kl = avae.AggregateKL(latent_dim=l, kde_size=m)
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=lr)
    sigma = max(1.0, sigma_min)
    sigmas = []
    for epoch in range(epochs):
        order = torch.randperm(len(train))
        kde_set, sgd = train[order[:m]], order[m:]
        for step, batch in enumerate(sgd.split(50)):
            if step % every == 0:
                with torch.no_grad():
                    kde_codes = encoder(kde_set)
            x = train[batch]
            z = encoder(x)
            recon = (decoder(z) - x).pow(2).sum(1).mean()
            loss = recon / sigma + kl(z, kde_codes)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            sigma = max(avae.sigma_from_validation(float((decoder(encoder(val)) - val).pow(2).sum(1).mean())), sigma_min)
        sigmas.append(sigma)
    return {"encoder": encoder, "decoder": decoder, "kl": kl, "sigmas": sigmas}


def score(encoder, kl, held_out: torch.Tensor) -> dict:
    with torch.no_grad():
        codes = encoder(held_out).double()
    fit = avae.latent_fit(codes, kl.h)
    c = codes.numpy()
    return {"ks": round(fit.ks_statistic, 4), "gaussian_kl": round(fit.gaussian_kl_to_sampling_distribution, 4),
            "target_variance": round(fit.sampling_variance, 4), "mean": np.round(c.mean(0), 3).tolist(),
            "covariance": np.round(np.cov(c, rowvar=False), 3).tolist()}


def main() -> None:
    torch.set_num_threads(1)  # tiny networks: one thread is fastest, and others share the machine
    rows = []
    started = time.perf_counter()
    for dataset in DATASETS:
        for seed in SEEDS:
            train, held_out = toy(dataset, seed)
            t = time.perf_counter()
            ns = run_readme(train, seed)
            rows.append({"variant": "readme", "dataset": dataset, "seed": seed, "seconds": round(time.perf_counter() - t, 2),
                         **score(ns["encoder"], ns["kl"], held_out), "sigma_last": round(ns["sigma"], 4)})
            for name, choices in VARIANTS.items():
                t = time.perf_counter()
                out = run_loop(train, seed, **choices)
                rows.append({"variant": name, "dataset": dataset, "seed": seed, "choices": choices,
                             "seconds": round(time.perf_counter() - t, 2), **score(out["encoder"], out["kl"], held_out),
                             "sigma_first_epochs": [round(s, 4) for s in out["sigmas"][:4]],
                             "sigma_last": round(out["sigmas"][-1], 4)})
            print(f"{dataset} seed {seed}: readme KS {rows[-len(VARIANTS) - 1]['ks']:.3f}, "
                  f"old recipe KS {rows[-len(VARIANTS) + 1]['ks']:.3f}", flush=True)
    summary = []
    for name in ["readme", *VARIANTS]:
        for dataset in DATASETS:
            mine = [r for r in rows if r["variant"] == name and r["dataset"] == dataset]
            ks, gkl = [r["ks"] for r in mine], [r["gaussian_kl"] for r in mine]
            summary.append({"variant": name, "dataset": dataset, "ks_median": statistics.median(ks), "ks_max": max(ks),
                            "gaussian_kl_median": statistics.median(gkl), "gaussian_kl_max": max(gkl),
                            "sigma_last_median": statistics.median(r["sigma_last"] for r in mine),
                            "covariance_diagonal_median": np.round(np.median([np.diag(r["covariance"]) for r in mine],
                                                                             0), 3).tolist(),
                            "seconds_median": statistics.median(r["seconds"] for r in mine)})
            s = summary[-1]
            print(f"{name:<50} {dataset:<16} KS median {s['ks_median']:.3f} max {s['ks_max']:.3f}  "
                  f"KL median {s['gaussian_kl_median']:.3f}  cov diag {s['covariance_diagonal_median']}  "
                  f"σ {s['sigma_last_median']:.3g}  {s['seconds_median']:.1f} s")
    out = Path(__file__).resolve().parent / "results" / "own_loop_toy.json"
    run.write_json(out, {"command": "python benchmarks/own_loop_toy.py", "seeds": list(SEEDS), "held_out": HELD_OUT,
                         "machine": hardware.machine() | {"torch_threads": torch.get_num_threads()},
                         "seconds": round(time.perf_counter() - started, 1), "summary": summary, "rows": rows})
    print(f"written: {out}")


if __name__ == "__main__":
    main()
