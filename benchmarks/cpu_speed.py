"""Time the AVAE's KDE re-encoding and its training epoch on this machine's CPU.

1. Re-encoding speed (images/s) of the paper's MNIST and disentanglement encoders (full width,
   1,000 images a batch, channels-last): the eval-mode training encoder under no_grad, as the
   re-encoding ran before, against the BatchNorm-folded inference copy under inference_mode that
   it runs now; float32 and bfloat16 autocast. The four variants take turns, best of the rounds.
   Then the inference copy in float32 on 1,024 images in calls of 64, 256 and 1,024 images, each
   memory layout: the candidates `auto` chooses model.kde_batch and model.kde_channels_last from.
2. One epoch of the paper's MNIST setting on Fashion-MNIST (l = 16, m = 10,000, re-encoding every
   10 steps, batch 100, full width) with precision `auto`, float32 and bfloat16, and the plain
   autoencoder at the same steps. `--train-size 12000` (default) takes 20 of the epoch's 400 SGD
   steps with the full m and refresh interval, `--val-size 2000` a fifth of the validation pass;
   times are scaled to the full epoch (400 steps, 10,000 validation images).

Other work on the machine slows every figure: the JSON records os.getloadavg() with each one,
and the CPU seconds the process got. Run it natively and with the kernels held to AVX2:

    python benchmarks/cpu_speed.py                                              # needs Fashion-MNIST
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/cpu_speed.py
Each writes benchmarks/results/cpu_speed-<capability>.json (AVX512, AVX2, ...).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

from avae import __version__, config, hardware, nets, trainer

RESULTS = Path(__file__).parent / "results"
PAPER_STEPS = 400  # SGD steps of one epoch in the paper's setting (40,000 images / batch 100)
VAL_IMAGES = 10000  # its validation pass
ENCODERS = {"mnist": (1, 32, 32), "disentangle": (1, 64, 64)}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def gemm_gflops(side: int = 2048, rounds: int = 10) -> float:
    """float32 matrix-product speed now: how fast this machine runs today (it varies with its neighbours)."""
    a, b = torch.randn(side, side), torch.randn(side, side)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return round(2 * side**3 / best / 1e9, 1)


def encode_speed(rounds: int, batch: int = 1000) -> dict:
    """Images/s of the old and the new re-encoding path, float32 and bfloat16, per encoder."""
    out = {}
    for arch, shape in ENCODERS.items():
        torch.manual_seed(0)
        encoder, _ = nets.build(arch, shape, 16, 16, 1.0, (0.0, 1.0))
        encoder.to(memory_format=torch.channels_last)
        x = torch.rand(batch, *shape, generator=torch.Generator().manual_seed(0))
        x = x.contiguous(memory_format=torch.channels_last)
        variants = {}
        for precision in ("float32", "bfloat16"):
            autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16")
            variants[f"before {precision}"] = (torch.no_grad, encoder.eval(), autocast)
            variants[f"after {precision}"] = (torch.inference_mode, nets.inference_encoder(encoder), autocast)
        best = {name: float("inf") for name in variants}
        load = os.getloadavg()
        for _ in range(rounds):
            for name, (mode, net, autocast) in variants.items():
                with mode(), autocast:
                    start = time.perf_counter()
                    net(x)
                    best[name] = min(best[name], time.perf_counter() - start)
        out[arch] = {name: round(batch / seconds) for name, seconds in best.items()}
        out[arch]["loadavg_1_5_15"] = [round(v, 2) for v in load]
        print(arch, out[arch], flush=True)
    return out


def call_sizes(rounds: int, images: int = hardware.INFERENCE_BATCHES[-1]) -> dict:
    """Images/s of the float32 inference copy per layout and images per call, timed as `auto` times them."""
    out = {}
    for arch, shape in ENCODERS.items():
        torch.manual_seed(0)
        encoder, _ = nets.build(arch, shape, 16, 16, 1.0, (0.0, 1.0))
        x = torch.rand(images, *shape, generator=torch.Generator().manual_seed(0))
        probes = {}
        for layout, fmt in (("channels_last", torch.channels_last), ("contiguous", torch.contiguous_format)):
            net, xs = nets.inference_encoder(encoder).to(memory_format=fmt), x.contiguous(memory_format=fmt)
            for batch in hardware.INFERENCE_BATCHES:
                probes[f"{layout} {batch}"] = hardware.encode_in_calls(net, xs, batch, bf16=False)
        load = os.getloadavg()
        out[arch] = {name: round(images / seconds) for name, seconds in hardware.best_times(probes, rounds).items()}
        out[arch]["loadavg_1_5_15"] = [round(v, 2) for v in load]
        print(arch, out[arch], flush=True)
    return out


def one_epoch(model: str, train_size: int, val_size: int, extra: list[str]) -> dict:
    """Train one epoch in a scratch run directory; its metrics line and what auto chose."""
    overrides = ["data.name=fashion_mnist", f"data.train_size={train_size}", f"data.val_size={val_size}",
                 f"model.name={model}", "train.epochs=1",
                 "train.figures_every=0", "train.progress=false", *extra]
    cfg = config.resolve(None, overrides)
    load, cpu, start = os.getloadavg(), cpu_seconds(), time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = trainer.start(cfg, Path(tmp) / "run")
        record = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
        chosen = json.loads((run_dir / "run.json").read_text())["auto"]["chosen"]
    record |= {"wall_s": time.perf_counter() - start, "cpu_s": cpu_seconds() - cpu,
               "loadavg_1_5_15": [round(v, 2) for v in load], "auto_chose": chosen, "settings": extra}
    print(model, extra, {k: round(v, 1) for k, v in record.items() if k in ("train_s", "val_s", "kde_refresh_s",
                                                                           "cpu_s")}, flush=True)
    return record


RUNS = {
    "auto": ("avae", []),
    "float32": ("avae", ["train.precision=float32", "model.kde_precision=float32"]),
    "calls1000": ("avae", ["model.kde_batch=1000"]),  # auto, but the re-encoding's calls as before (1,000 images)
    # what `auto` chose on the AVX2-held machine before the training step was timed at the run's batch
    # (16 images: contiguous won) and before the re-encoding had a layout and call size of its own
    "before": ("avae", ["train.channels_last=false", "model.kde_channels_last=false", "model.kde_batch=1000"]),
    "bfloat16": ("avae", ["train.precision=bfloat16", "model.kde_precision=bfloat16"]),
    "ae": ("ae", []),
}


def epochs(names: list[str], train_size: int, val_size: int) -> dict:
    runs = {name: one_epoch(RUNS[name][0], train_size, val_size, RUNS[name][1]) for name in names}
    ae_per_step = runs["ae"]["train_s"] / runs["ae"]["steps"] if "ae" in runs else None
    table = {}
    for name, r in runs.items():
        val_scaled = r["val_s"] * VAL_IMAGES / val_size
        row = {"steps_run": r["steps"], "train_s": r["train_s"], "val_s": r["val_s"],
               "epoch_s_full": r["train_s"] * PAPER_STEPS / r["steps"] + val_scaled, "cpu_s": r["cpu_s"],
               "loadavg_1_5_15": r["loadavg_1_5_15"], "auto_chose": r["auto_chose"], "settings": r["settings"]}
        if "kde_refresh_s" in r:
            row["kde_refresh_s"] = r["kde_refresh_s"]
            row["kde_refresh_share"] = r["kde_refresh_s"] / r["train_s"]
            if ae_per_step:
                row["train_over_ae_same_steps"] = r["train_s"] / (ae_per_step * r["steps"])
        table[name] = row
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=12000, help="Fashion-MNIST training images (50000: full)")
    parser.add_argument("--val-size", type=int, default=2000, help="validation images (10000: full)")
    parser.add_argument("--runs", default="auto,float32,bfloat16,ae", help="epochs to time, of: " + ",".join(RUNS))
    parser.add_argument("--rounds", type=int, default=5, help="turns of each re-encoding variant")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    facts = hardware.machine()
    torch.set_num_threads(hardware.threads())
    result = {
        "machine": facts | {"torch_threads": torch.get_num_threads(), "loadavg_at_start": os.getloadavg(),
                            "float32_gemm_gflops": gemm_gflops()},
        "command": " ".join([*(f"{k}={shlex.quote(v)}" for k, v in facts["kernel_env"].items()),
                             "python", *map(shlex.quote, sys.argv)]),
        "reencoding_images_per_s": encode_speed(args.rounds),
        "reencoding_images_per_s_by_call": call_sizes(args.rounds),
        "avae": __version__,
    }
    names = [n for n in args.runs.split(",") if n]
    if names:
        result["setting"] = (f"fashion_mnist, paper MNIST network (width 1), l=16, m=10000, k=10, batch 100; "
                             f"{args.train_size} training and {args.val_size} validation images, times scaled to "
                             f"{PAPER_STEPS} SGD steps and {VAL_IMAGES} validation images")
        result["reference"] = "authors' TensorFlow code on a 2-core AVX2 CPU: about 236 s per epoch; target ≤ 118 s"
        result["epochs"] = epochs(names, args.train_size, args.val_size)
    result["loadavg_at_end"] = os.getloadavg()
    out = args.out or RESULTS / f"cpu_speed-{facts['capability']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    for name, row in result.get("epochs", {}).items():
        share = f"  re-encoding {100 * row['kde_refresh_share']:4.1f}%" if "kde_refresh_share" in row else ""
        print(f"{name:<10} epoch {row['epoch_s_full']:6.1f} s{share}  load {row['loadavg_1_5_15'][0]}")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
