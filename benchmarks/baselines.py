"""A short Fashion-MNIST run of every model under the same network, data and epochs.

Setting: fashion_mnist, the paper's MNIST network at width 0.25, l = 16, a 10,000-image training
subset and 2,000 validation images, 2 epochs, batch 100, Adam 5e-4, each model with its
fashion_mnist preset (the paper's hyper-parameters); the AVAE with m = 2,000 (it takes SGD steps
on the other 8,000 images). Reports per model the final validation reconstruction error (mean
per-image SSE, the mean code for Gaussian encoders), the mean epoch time, training images per
second and the command that reproduces the run. Writes benchmarks/results/baselines.json.

    python benchmarks/baselines.py            # needs Fashion-MNIST (apt-get install dataset-fashion-mnist)
    python benchmarks/baselines.py --models vae wae --epochs 1
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import tempfile
import time
from pathlib import Path

import torch

from avae import __version__, config, trainer
from avae.models import MODELS

RESULTS = Path(__file__).parent / "results" / "baselines.json"
MODEL_ORDER = ["avae", "ae", "vae", "beta_vae", "beta_tcvae", "factor_vae", "dip_vae", "wae", "rae", "aae"]
SHARED = ["model.width=0.25", "data.train_size=10000", "data.val_size=2000", "train.figures_every=0"]
PER_MODEL = {"avae": ["model.kde_size=2000"]}


def overrides(model: str) -> list[str]:
    return [*SHARED, *PER_MODEL.get(model, [])]


def command(model: str, epochs: int) -> str:
    sets = " ".join(f"--set {shlex.quote(s)}" for s in overrides(model))
    return f"avae train --dataset fashion_mnist --model {model} --epochs {epochs} {sets}"


def run(model: str, epochs: int) -> list[dict]:
    """Train in a scratch run directory; return its metrics lines."""
    cfg = config.resolve(None, [
        "data.name=fashion_mnist", f"model.name={model}", f"train.epochs={epochs}", "train.progress=false",
        *overrides(model),
    ])
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = trainer.start(cfg, Path(tmp) / "run")
        return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODEL_ORDER, choices=sorted(MODELS))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    rows = {}
    for model in args.models:
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        m = run(model, args.epochs)
        rows[model] = {
            "val_recon_sse": m[-1]["val_recon"],
            "val_recon_per_epoch": [r["val_recon"] for r in m],
            "val_loss": m[-1]["val_loss"],
            "epoch_s": sum(r["epoch_s"] for r in m) / len(m),
            "train_s_per_epoch": sum(r["train_s"] for r in m) / len(m),
            "images_per_s": sum(r["images_per_s"] for r in m) / len(m),
            "sgd_steps_per_epoch": m[-1]["steps"],
            "wall_s": time.perf_counter() - start,
            "load_avg_1min_before": load_before,
            "command": command(model, args.epochs),
        }
        r = rows[model]
        print(f"{model:<11} val recon {r['val_recon_sse']:8.2f}  epoch {r['epoch_s']:6.1f} s  "
              f"{r['images_per_s']:6.0f} img/s  ({r['sgd_steps_per_epoch']} steps/epoch)", flush=True)

    result = {
        "setting": (f"fashion_mnist, paper MNIST network at width 0.25, l=16, train subset 10,000, val 2,000, "
                    f"{args.epochs} epochs, batch 100, Adam 5e-4; per-model hyper-parameters from the fashion_mnist "
                    f"preset; AVAE m=2,000 (SGD on the other 8,000 images)"),
        "metric": "val_recon_sse: mean per-image sum of squared errors on the 2,000 validation images after the last "
                  "epoch (decoding the mean code for Gaussian encoders); epoch_s and images_per_s: means over epochs",
        "models": rows,
        "machine": {"cpu_threads": torch.get_num_threads(), "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__, "avae": __version__},
        "command": "python benchmarks/baselines.py" + (f" --epochs {args.epochs}" if args.epochs != 2 else ""),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
