"""Studies beyond the paper's table: training budget, latent size and KDE size.

Each study is a list of runs (a name and the settings that differ from the base settings); runs
live in benchmarks/runs/<study>/<name>, a finished and evaluated run is skipped and an
interrupted one resumes, so the command can be repeated until the study is complete. Results:
results/<study>.json (one record per run, the benchmark's headline metrics) and
results/<study>.md with a plot per metric.

    python benchmarks/studies.py budget [--only shapes3d] [--seeds 0,1,2]
    python benchmarks/studies.py latent_size
    python benchmarks/studies.py kde_size
    python benchmarks/studies.py kde_size_long --seeds 0,1 --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from avae import benchmark, config, run, trainer
from avae.evaluation import Evaluation, evaluate
from avae.metrics import disentangle, latent
from avae.metrics.catalogue import headlines

DISENTANGLEMENT_BASE = ["data.val_size=5000", "train.figures_every=0", "train.progress=false"]
# budget = epochs × training images × width. The largest, paper-cpu's setting (dSprites 6 × 40,000
# × 0.5, 3D Shapes 3 × 40,000 × 0.5), is read from results/paper-cpu.json instead of being trained
# again; the two trained here span 24× (dSprites) and 12× (3D Shapes) with it, at paper-cpu's width,
# so the budgets differ in training steps and images alone.
BUDGETS = {"small": (1, 10000, 0.5), "medium": (2, 20000, 0.5)}
# the AVAE and, per PCA metric, the models ahead of it in paper-cpu: 3D Shapes the AAE and β-TCVAE in the
# first records (3 epochs, shared initial weights), the VAE and RAE in the re-run; dSprites the VAE
# (next to the AVAE on PCA-FactorVAE, ahead on PCA-MIG in the first records)
BUDGET_MODELS = {"shapes3d": ["avae", "aae", "beta_tcvae", "vae", "rae"], "dsprites": ["avae", "vae"]}
LATENT_SIZES = [8, 16, 32, 64, 128, 256, 512]
KDE_SIZES = [500, 1000, 2000, 5000, 10000]  # m < the 20,000 training images
LONG_KDE_SIZES = [500, 2000, 10000]  # kde_size_long: paper-cpu's Fashion-MNIST AVAE (l = 16) but for m
FASHION_BASE = ["data.name=fashion_mnist", "model.name=avae", "model.width=0.25", "train.epochs=2",
                "data.train_size=20000", "train.figures_every=0", "train.progress=false"]
# what scores a run: the budget study its disentanglement metrics and reconstruction alone, the
# Fashion-MNIST studies `avae evaluate` (5,000 test images, classifier features)
BUDGET_METRICS = ["factor_vae", "mig", "pca_factor_vae", "pca_mig"]
RESULT = {"budget": "disentanglement.json", "latent_size": "evaluate.json", "kde_size": "evaluate.json",
          "kde_size_long": "evaluate.json"}



def runs(study: str, seeds: list[int]) -> list[tuple[str, list[str], dict]]:
    """(run name, settings, labels) of every run of a study."""
    out = []
    if study == "budget":
        for seed in seeds:  # seed outermost: a study cut short holds whole seeds
            for dataset, models in BUDGET_MODELS.items():
                for budget, (epochs, images, width) in BUDGETS.items():
                    for model in models:
                        labels = {"dataset": dataset, "model": model, "seed": seed, "budget": budget,
                                  "budget_units": epochs * images * width}
                        out.append((f"{dataset}-{budget}-{model}-s{seed}", DISENTANGLEMENT_BASE + [
                            f"data.name={dataset}", f"model.name={model}", f"train.seed={seed}",
                            f"train.epochs={epochs}", f"data.train_size={images}", f"model.width={width}"]
                            + (["model.kde_size=2000"] if model == "avae" else []), labels))
    elif study == "latent_size":
        for seed in seeds:
            for l in LATENT_SIZES:
                out.append((f"l{l}-s{seed}", FASHION_BASE + ["model.kde_size=2000", f"model.latent_dim={l}",
                            f"train.seed={seed}"], {"dataset": "fashion_mnist", "model": "avae", "seed": seed, "l": l}))
    elif study == "kde_size":
        for seed in seeds:
            for l in (16, 64):
                for m in KDE_SIZES:
                    out.append((f"l{l}-m{m}-s{seed}", FASHION_BASE + [f"model.kde_size={m}", f"model.latent_dim={l}",
                                f"train.seed={seed}"],
                                {"dataset": "fashion_mnist", "model": "avae", "seed": seed, "l": l, "m": m}))
    elif study == "kde_size_long":
        base = paper_cpu_settings("fashion_mnist", "avae")
        for seed in seeds:
            for m in LONG_KDE_SIZES:
                out.append((f"l16-m{m}-s{seed}", base + [f"model.kde_size={m}", f"train.seed={seed}"],
                            {"dataset": "fashion_mnist", "model": "avae", "seed": seed, "l": 16, "m": m}))
    else:
        raise SystemExit(f"unknown study {study}: budget, latent_size, kde_size or kde_size_long")
    return out


def paper_cpu_settings(dataset: str, model: str) -> list[str]:
    """The settings of paper-cpu's run of a model on a dataset (seed 0's; later settings override them), as
    --set strings (each value in JSON, which YAML reads back as the same value)."""
    job = next(job for job in benchmark.plan(benchmark.load_suite("paper-cpu"))
               if (job.dataset, job.model, job.seed) == (dataset, model, 0))
    return [f"{key}={json.dumps(value)}" for key, value in job.settings.items()]


def run_one(run_dir: Path, settings: list[str], seed: int, study: str) -> None:
    if (run_dir / RESULT[study]).is_file():
        return
    status = run.status(run_dir)
    if status is None:
        trainer.start(config.resolve(None, settings), run_dir)
    elif status != "finished":
        trainer.resume(run_dir)
    if study == "budget":
        score_disentanglement(run_dir, seed)
    else:
        evaluate(run_dir, seed=seed, disentanglement="none", progress=False, n=5000, features="classifier")


def score_disentanglement(run_dir: Path, seed: int, n: int = 2000) -> None:
    """RUN_DIR/disentanglement.json: the budget study's metrics (fast preset, as paper-cpu) and the
    reconstruction error on n held-out images; the full evaluation's other metrics would triple its cost."""
    start = time.perf_counter()
    ev = Evaluation(run_dir, n, seed, "last", None)
    codes = ev.encode_images(ev.images)
    x = ev.images.astype(np.float64) / 255 * (ev.vr[1] - ev.vr[0]) + ev.vr[0]
    result = {
        "n": ev.n, "seed": seed,
        "latent_quality": {"reconstruction": latent.reconstruction_errors(x, ev.decode(codes, "reconstructions")),
                           "collapsed_axes": latent.collapsed_axes(codes)},
        "disentanglement": disentangle.scores(ev.data.factor_grid, ev.encode_images, seed, BUDGET_METRICS, preset="fast"),
    }
    result["timings_s"] = {"scoring": time.perf_counter() - start}
    run.write_json(run_dir / RESULT["budget"], result)


def record(run_dir: Path, labels: dict, study: str) -> dict:
    result = json.loads((run_dir / RESULT[study]).read_text())
    epochs = run.read_metrics(run_dir)
    training = {"epoch_s": float(np.mean([e["epoch_s"] for e in epochs])),
                "images_per_s": float(np.mean([e["images_per_s"] for e in epochs])),
                "train_s": float(sum(e["epoch_s"] for e in epochs)), "final": epochs[-1]}
    headline = headlines(result, training)
    variances = result["latent_quality"]["collapsed_axes"]["variances"]
    if study != "budget":  # the AVAE's own figures: its KL estimate, bandwidth, entropy against the Gaussian's
        final = epochs[-1]
        headline |= {"kde_kl": final["val_kl"], "h": final["h"], "min_axis_variance": float(min(variances)),
                     "entropy_over_gaussian": headline["entropy"] / headline["entropy_gaussian"]}
    return {**labels, "run": run_dir.name, "headline": headline, "training": training,
            "evaluate_s": float(sum(result["timings_s"].values())), "latent_variances": variances}


PLOTS = {  # study: (x label in the records, metrics plotted against it)
    "budget": ("budget_units", ["pca_factor_vae", "pca_mig", "factor_vae", "mig", "sse_per_image"]),
    "latent_size": ("l", ["fd_N", "entropy_over_gaussian", "kde_kl", "h", "gaussian_kl", "gaussian_kl_prior",
                          "norm_ks", "collapsed_axes", "min_axis_variance", "sse_per_image"]),
    "kde_size": ("m", ["fd_N", "prd_precision_N", "prd_recall_N", "entropy_over_gaussian", "kde_kl", "h",
                       "gaussian_kl", "sse_per_image", "epoch_s"]),
}
PLOTS["kde_size_long"] = PLOTS["kde_size"]


def budget_units(cfg: dict) -> float:
    """epochs × training images × width of a run's config."""
    return float(cfg["train"]["epochs"] * cfg["data"]["train_size"] * cfg["model"]["width"])


def paper_cpu_records(results: Path) -> list[dict]:
    """paper-cpu's dSprites and 3D Shapes records of the budget study's models, as its largest budget:
    of results/paper-cpu*.json (the whole suite and its re-run parts), each run's latest record."""
    latest: dict = {}
    for path in sorted(results.glob("paper-cpu*.json")):
        payload = json.loads(path.read_text())
        for r in payload["records"]:
            key = (r["dataset"], r["model"], r["seed"])
            if key not in latest or payload.get("written", "") >= latest[key][0]:
                latest[key] = (payload.get("written", ""), r)
    return [{"dataset": r["dataset"], "model": r["model"], "seed": r["seed"], "budget": "large (paper-cpu)",
             "budget_units": budget_units(r["config"]), "headline": r["headline"]}
            for _, r in latest.values() if r["model"] in BUDGET_MODELS.get(r["dataset"], [])]


def page(study: str, records: list[dict], results: Path, command: str) -> Path:
    """results/<study>.md: mean ± std per point and metric, with one plot per metric."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x_key, metrics = PLOTS[study]
    groups: dict = {}
    for r in records:
        series = (r["dataset"], r["model"], r.get("l") if x_key == "m" else None)  # one series per l over m
        groups.setdefault(series, {}).setdefault(r[x_key], []).append(r["headline"])
    lines = [f"# Study `{study}`", "", f"Command: `{command}`; mean ± std over seeds (population std), "
             "n = number of seeds.", ""]
    if study == "budget":
        lines += avae_ranks(groups)
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
        if ax.lines:
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(results / f"{study}-{metric}.png", dpi=100)
        plt.close(fig)
        lines.append("")
    out = results / f"{study}.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def avae_ranks(groups: dict) -> list[str]:
    """Markdown: the AVAE's rank by mean among the models at each budget, per dataset and metric (1 = best)."""
    budgets = sorted({x for points in groups.values() for x in points})
    lines = ["## The AVAE's rank per budget", "", "| dataset | metric | " + " | ".join(f"{x:g}" for x in budgets) + " |",
             "|---|---|" + "---|" * len(budgets)]
    for dataset in sorted({d for d, _, _ in groups}):
        for metric in ["pca_factor_vae", "pca_mig", "factor_vae", "mig"]:
            cells = []
            for x in budgets:
                means = {model: np.mean([h[metric] for h in points[x] if metric in h])
                         for (d, model, _), points in groups.items()
                         if d == dataset and any(metric in h for h in points.get(x, []))}
                cells.append(f"{1 + sum(v > means['avae'] for v in means.values())} of {len(means)}"
                             if "avae" in means else "–")
            lines.append(f"| {dataset} | {metric} | " + " | ".join(cells) + " |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--only", default="", help="run only names containing each comma-separated part")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training and evaluation")
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/runs"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    wanted = [p for p in args.only.split(",") if p]
    planned = runs(args.study, seeds)
    command = f"python benchmarks/studies.py {args.study} --seeds {args.seeds} --threads {args.threads}"
    torch.set_num_threads(args.threads)
    out = args.results / f"{args.study}.json"
    previous = {r["run"]: r for r in json.loads(out.read_text())["records"]} if out.is_file() else {}
    for name, settings, labels in planned:
        if name in previous or (wanted and not all(p in name for p in wanted)):
            continue
        start = time.perf_counter()
        run_one(args.runs / args.study / name, settings + [f"train.threads={args.threads}"], labels["seed"], args.study)
        previous[name] = record(args.runs / args.study / name, labels, args.study) | {
            "wall_s": time.perf_counter() - start}
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
        run.write_json(out, {
            "study": args.study, "scored_by": RESULT[args.study], "threads": args.threads,
            "machine": {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "cores": os.cpu_count(),
                        "torch": torch.__version__},
            "records": list(previous.values()),
            "command": command})
    if previous:
        extra = paper_cpu_records(args.results) if args.study == "budget" else []
        print(page(args.study, list(previous.values()) + extra, args.results, command))


if __name__ == "__main__":
    main()
