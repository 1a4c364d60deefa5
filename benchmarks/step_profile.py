"""Where the AVAE's time goes, op by op, and how long `avae train` takes before its first step.

The paper's MNIST setting on Fashion-MNIST (full width, l = 16, m = 10,000, batch 100): torch's
profiler over `--steps` SGD steps (loss, backward, Adam) and over `--refreshes` re-encodings of the
KDE set, each in float32 and in what `auto` chooses here, the trainer's own functions doing the work.
Ops are listed by self CPU time (their children excluded), with their share of the phase.
Start-up: seconds from the interpreter's start to the first SGD step of `avae train` in a fresh
process (imports, data, model, the `auto` choice, the bandwidth), its cache of `auto` choices and
bandwidths empty and then warm.

    python benchmarks/step_profile.py --threads 1         # → results/step_profile-<capability>.json
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/step_profile.py --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from avae import __version__, config, hardware, trainer
from avae.data import load_data
from avae.models import seeded_model

RESULTS = Path(__file__).parent / "results"
SETTING = ["data.name=fashion_mnist", "data.train_size=12000", "data.val_size=500", "model.latent_dim=16",
           "model.kde_size=10000", "train.batch_size=100", "train.epochs=1", "train.figures_every=0",
           "train.progress=false"]
VARIANTS = {"float32": ["train.precision=float32", "model.kde_precision=float32"], "auto": []}
TOP = 12  # ops listed per phase


def phases(extra: list[str], threads: int, steps: int, refreshes: int) -> dict:
    """Profiles of SGD steps and of re-encodings, run by the trainer's own code."""
    cfg = config.resolve(None, [*SETTING, *extra, f"train.threads={threads}"])
    data = load_data(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        loop = trainer.Trainer(cfg, Path(tmp) / "run", data, seeded_model(cfg, data), callbacks=[])
    model, settings = loop.model, loop.settings
    torch.set_num_threads(threads)
    order = np.random.default_rng(0).permutation(len(data.train))
    sgd = model.on_epoch_start(loop.context, order)
    model.train()

    def step(i: int) -> None:
        x = loop.prepare(data.train.images(sgd[i * settings.batch_size : (i + 1) * settings.batch_size]))
        with loop.autocast():
            losses = model(x)
        loop.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        loop.optimizer.step()

    model.refresh_kde_codes(loop.context)  # warm-up: first calls pay for allocation and kernel choice
    step(0)
    out = {"chosen": loop.auto["chosen"]}
    for name, work, repeats in (("sgd_step", step, steps), ("re_encoding", lambda i: model.refresh_kde_codes(loop.context),
                                                            refreshes)):
        start, cpu = time.perf_counter(), time.process_time()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for i in range(repeats):
                work(i + 1)
        wall = (time.perf_counter() - start) / repeats
        ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in ops)
        out[name] = {"wall_s_each": round(wall, 4), "cpu_s_each": round((time.process_time() - cpu) / repeats, 4),
                     "ops": [{"op": e.key, "self_share": round(e.self_cpu_time_total / total, 4),
                              "self_ms_each": round(e.self_cpu_time_total / 1e3 / repeats, 2), "calls_each": e.count // repeats}
                             for e in ops[:TOP]]}
        print(f"{name}: {wall:.3f} s each; " + ", ".join(f"{o['op']} {o['self_share']:.0%}" for o in out[name]["ops"][:5]),
              flush=True)
    return out


START_UP = """
import time; began = time.perf_counter()
import sys, avae
from avae import Callback
class First(Callback):
    def on_step_end(self, info, step, losses):
        if step == 0:
            print(f"first step after {time.perf_counter() - began:.2f} s", flush=True); raise SystemExit(0)
avae.train(None, out=sys.argv[1], overrides=sys.argv[2:], callbacks=[First()])
"""


def start_up(threads: int) -> dict:
    """Seconds to the first SGD step of a fresh process: with an empty cache, then with the one it filled."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "AVAE_CACHE_DIR": str(Path(tmp) / "cache")}
        for cache in ("empty", "warm"):
            args = [sys.executable, "-c", START_UP, str(Path(tmp) / cache), *SETTING, f"train.threads={threads}"]
            start = time.perf_counter()
            proc = subprocess.run(args, env=env, capture_output=True, text=True)
            said = [line for line in proc.stdout.splitlines() if line.startswith("first step after")]
            if not said:
                raise SystemExit(proc.stderr[-2000:])
            out[cache] = {"first_step_s": float(said[0].split()[3]), "process_s": round(time.perf_counter() - start, 2)}
            print(f"start-up, cache {cache}: {out[cache]}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--refreshes", type=int, default=2)
    args = parser.parse_args()
    facts = hardware.machine()
    result = {"machine": facts, "torch": torch.__version__, "avae": __version__, "threads": args.threads,
              "busy_cores_at_start": round(hardware.busy_cores(0.5), 2), "loadavg": os.getloadavg(),
              "setting": SETTING, "command": " ".join(["python", *sys.argv]),
              "variants": {name: phases(extra, args.threads, args.steps, args.refreshes) for name, extra in VARIANTS.items()},
              "start_up": start_up(args.threads)}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"step_profile-{facts['capability'].upper()}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
