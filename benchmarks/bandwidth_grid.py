"""h_opt(l, m) over a grid of latent sizes and KDE sizes, a closed-form approximation fitted to
it, and the approximation's worst error on the grid. Resumable: finished points are kept in the
results file and skipped.

    python benchmarks/bandwidth_grid.py     # → results/bandwidth_grid.json and bandwidth_grid.png
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import least_squares

from avae import run
from avae.kde_bandwidth import bandwidth

LATENT_SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
KDE_SIZES = [100, 1000, 10000, 100000, 300, 3000, 30000]  # decades first
SEEDS = [0, 1]


def approximation(params: np.ndarray, l: np.ndarray, m: np.ndarray) -> np.ndarray:
    """log h_opt ≈ (a + b·ln l − ln m)/(l+4) + ½·ln(1 + e^c·l^d): Silverman's rate m^(−1/(l+4)) with
    fitted constants, and a factor that carries h beyond 1 at large l."""
    a, b, c, d = params
    return (a + b * np.log(l) - np.log(m)) / (l + 4) + 0.5 * np.log1p(np.exp(c) * l**d)


def fit(points: list[dict]) -> dict:
    l = np.array([p["l"] for p in points], float)
    m = np.array([p["m"] for p in points], float)
    log_h = np.log([p["h_opt_mean"] for p in points])
    result = least_squares(lambda q: approximation(q, l, m) - log_h, x0=[0.0, 0.0, -3.0, 0.5])
    ratio = np.exp(approximation(result.x, l, m) - log_h)
    worst = int(np.argmax(np.abs(ratio - 1)))
    a, b, c, d = result.x
    formula = (f"h_opt ≈ (exp({a:.4f}) · l^{b:.4f} / m)^(1/(l+4)) · √(1 + exp({c:.4f}) · l^{d:.4f})")
    return {"params": result.x.tolist(), "formula": formula, "worst_relative_error": float(abs(ratio[worst] - 1)),
            "worst_at": {"l": int(l[worst]), "m": int(m[worst])},
            "median_relative_error": float(np.median(np.abs(ratio - 1)))}


def plot(points: list[dict], fitted: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for l in sorted({p["l"] for p in points}):
        row = sorted((p for p in points if p["l"] == l), key=lambda p: p["m"])
        m = np.array([p["m"] for p in row], float)
        line = ax.errorbar(m, [p["h_opt_mean"] for p in row], yerr=[p["h_opt_spread"] / 2 for p in row],
                           marker="o", ms=3, lw=1, label=f"l = {l}")
        ax.plot(m, np.exp(approximation(np.array(fitted["params"]), np.full_like(m, l), m)), ls=":",
                color=line[0].get_color())
    ax.set(xscale="log", yscale="log", xlabel="KDE size m", ylabel="h_opt",
           title="h_opt(l, m): estimates (bars: spread over seeds) and the fitted formula (dotted)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bandwidth_grid.json"))
    args = parser.parse_args()
    done = json.loads(args.out.read_text())["points"] if args.out.is_file() else []
    have = {(p["l"], p["m"]) for p in done}
    for m in KDE_SIZES:  # an interrupted run still covers every l at the sizes it reached
        for l in LATENT_SIZES:
            if (l, m) in have:
                continue
            start = time.perf_counter()
            estimates = [bandwidth(l, m, seed=s).h_opt for s in SEEDS]
            done.append({"l": l, "m": m, "h_opt": estimates, "h_opt_mean": float(np.mean(estimates)),
                         "h_opt_spread": float(np.ptp(estimates)), "seconds": time.perf_counter() - start})
            print(f"l={l} m={m} h_opt={estimates}", flush=True)
            write(args.out, done)
    write(args.out, done)


def write(out: Path, points: list[dict]) -> None:
    fitted = fit(points) if len(points) >= 8 else None
    machine = {"cpu": torch.backends.cpu.get_cpu_capability(), "platform": platform.platform(),
               "torch": torch.__version__, "threads": torch.get_num_threads()}
    out.parent.mkdir(parents=True, exist_ok=True)
    run.write_json(out, {"command": "python benchmarks/bandwidth_grid.py", "seeds": SEEDS, "machine": machine,
                           "points": points, "approximation": fitted})
    if fitted:
        plot(points, fitted, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
