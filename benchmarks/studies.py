"""Studies beyond the paper's table: training budget, latent size and KDE size.

Each study is a list of runs (a name and the settings that differ from the base settings); runs
live in benchmarks/runs/<study>/<name>, a finished and evaluated run is skipped and an
interrupted one resumes, so the command can be repeated until the study is complete. Results:
results/<study>.json (one record per run, the benchmark's headline metrics) and
results/<study>.md with a plot per metric.

    python benchmarks/studies.py budget [--only shapes3d] [--seeds 0,1,2]
    python benchmarks/studies.py latent_size
    python benchmarks/studies.py kde_size
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from avae import benchmark, config, run, train
from avae.evaluate import evaluate

DISENTANGLEMENT_BASE = ["data.val_size=5000", "train.figures_every=0", "train.progress=false"]
# budget = epochs × training images × width; the middle one, paper-cpu's setting, is read from
# results/paper-cpu.json instead of being trained again
BUDGETS = {"small": (2, 20000, 0.25), "large": (6, 80000, 1.0)}
PAPER_CPU_BUDGET = 3 * 40000 * 0.5
# the AVAE and, per disentanglement metric, the model ahead of it in paper-cpu
BUDGET_MODELS = {"shapes3d": ["avae", "aae", "beta_tcvae"], "dsprites": ["avae", "vae"]}
LATENT_SIZES = [8, 16, 32, 64, 128, 256, 512]
KDE_SIZES = [500, 2000, 5000, 20000]
FASHION_BASE = ["data.name=fashion_mnist", "model.name=avae", "model.width=0.25", "train.epochs=3",
                "train.figures_every=0", "train.progress=false"]


def runs(study: str, seeds: list[int]) -> list[tuple[str, list[str], dict]]:
    """(run name, settings, labels) of every run of a study."""
    out = []
    if study == "budget":
        for dataset, models in BUDGET_MODELS.items():
            for budget, (epochs, images, width) in BUDGETS.items():
                for model in models:
                    for seed in seeds:
                        labels = {"dataset": dataset, "model": model, "seed": seed, "budget": budget,
                                  "budget_units": epochs * images * width}
                        out.append((f"{dataset}-{budget}-{model}-s{seed}", DISENTANGLEMENT_BASE + [
                            f"data.name={dataset}", f"model.name={model}", f"train.seed={seed}",
                            f"train.epochs={epochs}", f"data.train_size={images}", f"model.width={width}"]
                            + (["model.kde_size=2000"] if model == "avae" else []), labels))
    elif study == "latent_size":
        for l in LATENT_SIZES:
            for seed in seeds:
                out.append((f"l{l}-s{seed}", FASHION_BASE + ["model.kde_size=2000", f"model.latent_dim={l}",
                            f"train.seed={seed}"], {"dataset": "fashion_mnist", "model": "avae", "seed": seed, "l": l}))
    elif study == "kde_size":
        for l in (16, 64):
            for m in KDE_SIZES:
                for seed in seeds:
                    out.append((f"l{l}-m{m}-s{seed}", FASHION_BASE + [f"model.kde_size={m}", f"model.latent_dim={l}",
                                f"train.seed={seed}"],
                                {"dataset": "fashion_mnist", "model": "avae", "seed": seed, "l": l, "m": m}))
    else:
        raise SystemExit(f"unknown study {study}: budget, latent_size or kde_size")
    return out


def run_one(run_dir: Path, settings: list[str], seed: int, n: int) -> None:
    if (run_dir / "evaluate.json").is_file():
        return
    status = json.loads((run_dir / "run.json").read_text())["status"] if (run_dir / "run.json").is_file() else None
    if status is None:
        train.start(config.resolve(None, settings), run_dir)
    elif status != "finished":
        train.resume(run_dir)
    evaluate(run_dir, n=n, seed=seed, disentanglement="fast", progress=False)


def record(run_dir: Path, labels: dict) -> dict:
    result = json.loads((run_dir / "evaluate.json").read_text())
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    training = {"epoch_s": float(np.mean([e["epoch_s"] for e in epochs])),
                "images_per_s": float(np.mean([e["images_per_s"] for e in epochs])),
                "train_s": float(sum(e["epoch_s"] for e in epochs)), "final": epochs[-1]}
    return {**labels, "run": run_dir.name, "headline": benchmark.headlines(result, training),
            "training": training, "evaluate_s": float(sum(result["timings_s"].values())),
            "latent_variances": result["latent_quality"]["collapsed_axes"]["variances"]}


PLOTS = {  # study: (x label in the records, metrics plotted against it)
    "budget": ("budget_units", ["pca_factor_vae", "pca_mig", "factor_vae", "mig", "sse_per_image"]),
    "latent_size": ("l", ["fd_N", "entropy", "gaussian_kl", "gaussian_kl_prior", "norm_ks", "collapsed_axes",
                          "sse_per_image"]),
    "kde_size": ("m", ["fd_N", "prd_precision_N", "prd_recall_N", "entropy", "gaussian_kl", "sse_per_image"]),
}


def paper_cpu_records(results: Path) -> list[dict]:
    """paper-cpu's dSprites and 3D Shapes records of the budget study's models, as its middle budget."""
    path = results / "paper-cpu.json"
    if not path.is_file():
        return []
    return [{"dataset": r["dataset"], "model": r["model"], "seed": r["seed"], "budget": "medium (paper-cpu)",
             "budget_units": PAPER_CPU_BUDGET, "headline": r["headline"]}
            for r in json.loads(path.read_text())["records"] if r["model"] in BUDGET_MODELS.get(r["dataset"], [])]


def page(study: str, records: list[dict], results: Path) -> Path:
    """results/<study>.md: mean ± std per point and metric, with one plot per metric."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x_key, metrics = PLOTS[study]
    groups: dict = {}
    for r in records:
        series = (r["dataset"], r["model"], r.get("l") if study == "kde_size" else None)
        groups.setdefault(series, {}).setdefault(r[x_key], []).append(r["headline"])
    lines = [f"# Study `{study}`", "", f"Command: `python benchmarks/studies.py {study}`; mean ± std over seeds "
             "(population std), n = number of seeds.", ""]
    for metric in metrics:
        fig, ax = plt.subplots(figsize=(5.5, 3.5))
        lines += [f"## {metric}", "", f"![{metric}]({study}-{metric}.png)", "", f"| series | {x_key} | mean ± std | n |",
                  "|---|---|---|---|"]
        for (dataset, model, l), points in sorted(groups.items(), key=str):
            label = f"{dataset} {model}" + (f" l={l}" if l else "")
            xs = sorted(points)
            values = [[h[metric] for h in points[x] if metric in h] for x in xs]
            kept = [(x, v) for x, v in zip(xs, values) if v]
            if not kept:
                continue
            ax.errorbar([x for x, _ in kept], [np.mean(v) for _, v in kept], yerr=[np.std(v) for _, v in kept],
                        marker="o", capsize=3, label=label)
            lines += [f"| {label} | {x:g} | {np.mean(v):.4g} ± {np.std(v):.2g} | {len(v)} |" for x, v in kept]
        ax.set(xscale="log", xlabel=x_key, ylabel=metric)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(results / f"{study}-{metric}.png", dpi=100)
        plt.close(fig)
        lines.append("")
    out = results / f"{study}.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--only", default="", help="run only names containing each comma-separated part")
    parser.add_argument("-n", type=int, default=5000, help="held-out images per evaluation")
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/runs"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    wanted = [p for p in args.only.split(",") if p]
    out = args.results / f"{args.study}.json"
    previous = {r["run"]: r for r in json.loads(out.read_text())["records"]} if out.is_file() else {}
    for name, settings, labels in runs(args.study, seeds):
        if name in previous or (wanted and not all(p in name for p in wanted)):
            continue
        start = time.perf_counter()
        run_one(args.runs / args.study / name, settings, labels["seed"], args.n)
        previous[name] = record(args.runs / args.study / name, labels) | {"wall_s": time.perf_counter() - start}
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
        run.write_json(out, {"study": args.study, "n": args.n, "records": list(previous.values()),
                               "command": f"python benchmarks/studies.py {args.study}"})
    if previous:
        extra = paper_cpu_records(args.results) if args.study == "budget" else []
        print(page(args.study, list(previous.values()) + extra, args.results))


if __name__ == "__main__":
    main()
