"""How fast a benchmark suite's runs trained, against what the machine can do.

The machine's measured matrix-multiply peak (`gemm_peak`), the FLOPs of a run's training step
(`step_flops`), and per dataset and model: epoch time, images/s, GFLOP/s and its share of the
float32 peak, the AVAE's re-encoding share and bandwidth estimation time (`measure`). `machine`
is the description a suite's results record of where they were computed.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np
import torch

from . import hardware, run


def machine() -> dict:
    """Where a suite's results were computed: platform, CPUs, torch threads and GPU (hardware.machine's)."""
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": hardware.machine()["gpu"]}


def gemm_peak(dtype: torch.dtype, device: str = "cpu", repeats: int = 5) -> float:
    """Measured matrix-multiply throughput of this machine, GFLOP/s (best of `repeats`)."""
    n = 8192 if device == "cuda" else 2048
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)

    def matmul():
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()

    matmul()  # warm-up
    best = min(hardware.seconds_of(matmul) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def step_flops(run_dir: Path, trust_code: bool = False) -> dict:
    """FLOPs of one training step (forward + backward) and, for the AVAE, of one KDE re-encoding."""
    from torch.utils.flop_counter import FlopCounterMode

    record = run.read_record(run_dir)
    cfg, spec = record.cfg, record.spec
    model = run.open_model(record, trust_code)
    batch = torch.rand(cfg.train.batch_size, *spec.shape)
    if hasattr(model, "kde_codes"):
        m = model.params.kde_size
        model.kde_codes = torch.randn(m, model.latent_dim)
        with FlopCounterMode(display=False) as refresh:
            with torch.no_grad():
                model.encoder(torch.rand(min(m, 1000), *spec.shape))
        refresh_flops = refresh.get_total_flops() * m / min(m, 1000)
    with FlopCounterMode(display=False) as step:
        model.training_loss(batch)["loss"].backward()
    out = {"step": step.get_total_flops()}
    if hasattr(model, "kde_codes"):
        out["kde_refresh"] = refresh_flops
        out["refresh_every"] = model.params.kde_refresh_every
    return out


def measure(records: list[dict], trust_code: bool = False) -> dict:
    """Epoch-time ratios, the re-encoding share, bandwidth time, images/s and FLOP/s against the GEMM peak."""
    from .kde_bandwidth import bandwidth

    device = "cuda" if torch.cuda.is_available() else "cpu"  # where `train.device: auto` trains
    peaks = {"float32": gemm_peak(torch.float32, device)}
    if hardware.native_bf16(torch.device(device)):  # emulated, a 2048² product takes about a minute and tells nothing
        peaks["bfloat16"] = gemm_peak(torch.bfloat16, device)
    out: dict = {"device": device, "gemm_peak_gflops": peaks, "datasets": {}}
    for dataset in sorted({r["dataset"] for r in records}):
        rows = [r for r in records if r["dataset"] == dataset]
        by_model: dict = {}
        for r in rows:
            t = r["training"]
            flops = step_flops(Path(r["run_dir"]), trust_code)
            steps = sum(t["steps"])
            total = flops["step"] * steps
            if "kde_refresh" in flops:
                total += flops["kde_refresh"] * sum(-(-s // flops["refresh_every"]) for s in t["steps"])
            entry = by_model.setdefault(r["model"], {"epoch_s": [], "images_per_s": [], "gflops_per_s": []})
            entry["epoch_s"].append(t["epoch_s"])
            entry["images_per_s"].append(t["images_per_s"])
            entry["gflops_per_s"].append(total / sum(t["train_times_s"]) / 1e9)
            if t["kde_refresh_s"]:
                entry.setdefault("kde_refresh_share", []).append(sum(t["kde_refresh_s"]) / sum(t["train_times_s"]))
        summary = {m: {k: float(np.mean(v)) for k, v in e.items()} for m, e in by_model.items()}
        for m in summary:  # the torch threads of the model's epochs: a speed is per thread count
            counts = {t for r in rows if r["model"] == m for t in r["training"].get("threads", [])}
            summary[m]["threads"] = "–".join(map(str, sorted(t for t in counts if t is not None))) or "?"
        for m in summary.values():
            m["percent_of_float32_peak"] = 100 * m["gflops_per_s"] / peaks["float32"]
        ds = {"models": summary}
        if "avae" in summary and "vae" in summary:
            ds["avae_epoch_over_vae"] = summary["avae"]["epoch_s"] / summary["vae"]["epoch_s"]
        avae = next((r for r in rows if r["model"] == "avae"), None)
        if avae is not None:
            l, m = avae["config"]["model"]["latent_dim"], avae["config"]["model"]["kde_size"]
            ds["bandwidth_estimation_s"] = hardware.seconds_of(lambda: bandwidth(l, m, cache=False))
        out["datasets"][dataset] = ds
    return out
