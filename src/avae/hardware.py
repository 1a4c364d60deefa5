"""What `auto` means on the machine at hand: precision, memory layout and threads.

bfloat16 is a candidate only where the hardware computes it natively (AVX-512 BF16 or AMX on
x86, the bf16 extension on Arm, compute capability ≥ 8 on CUDA); elsewhere it is emulated and
many times slower than float32. On a CPU a short measurement of the model's own networks then
decides between the candidates and the two memory layouts. The measurement is cached per
machine (CPU model, torch's capability, the environment variables that limit the instruction
set, torch version) and network, so it runs once.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import platform
import time
from pathlib import Path

import torch

from .bandwidth import cache_path, read_json_cache, write_json_cache

AUTO = "auto"
# environment variables that change which kernels run (set them to emulate a smaller CPU)
KERNEL_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
                    "OMP_NUM_THREADS")
NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # /proc/cpuinfo names (x86 and Arm)
BF16_MARGIN = 1.15  # bfloat16 must beat float32 by this factor: a near tie keeps the exact float32
BUSY_LOAD = 1.5  # load average per core above which a measurement is used but not cached
PROBE_BATCH = 16  # images per timed training step (inference takes 4×)
CACHE_VERSION = 1


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine() -> dict:
    """What names this machine in a published speed figure and in the cache of choices."""
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    return {
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16_flags": sorted(flags & NATIVE_BF16_FLAGS),
        "cores": available_cores(),
        "torch": torch.__version__,
        "kernel_env": {k: os.environ[k] for k in KERNEL_VARIABLES if k in os.environ},
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def native_bf16(device: torch.device, facts: dict | None = None) -> bool:
    """Whether the hardware computes bfloat16 itself (torch's kernels not limited below it)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return False
    facts = facts or machine()
    if {"avx512_bf16", "amx_bf16"} & set(facts["native_bf16_flags"]):  # x86
        onednn = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL").upper()
        limited = onednn in ("AVX", "AVX512_CORE") or onednn.startswith(("SSE", "AVX2", "AVX512_CORE_VNNI"))
        return facts["capability"].startswith(("AVX512", "AMX")) and not limited  # the kernels may be held back
    return "bf16" in facts["native_bf16_flags"]  # Arm


def threads() -> int:
    """torch's intra-op threads: OMP_NUM_THREADS where set (torchrun sets it), else the cores
    this process may use, shared among the processes of this machine."""
    if "OMP_NUM_THREADS" in os.environ:
        return torch.get_num_threads()
    return max(1, available_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def apply(cfg: dict, model, choices: dict) -> dict:
    """Replace the `auto` settings of a run's config (in place) and of its model by the choices
    of `fastest`; returns {"section.setting": value} of what was chosen."""
    train, chosen = cfg["train"], {}
    for key, value in (("precision", choices["train_precision"]), ("channels_last", choices["channels_last"]),
                       ("threads", threads())):
        if train.get(key) in (AUTO, None):  # channels_last and threads spell auto as null
            train[key] = chosen[f"train.{key}"] = value
    for key, value in model.resolve_auto(choices).items():
        cfg["model"][key] = chosen[f"model.{key}"] = value
    return chosen


def fastest(model, device: torch.device) -> dict:
    """Precision for training and for inference, and memory layout, for a model's networks here.

    Returns {"train_precision", "inference_precision", "channels_last", "basis", "seconds"}:
    basis says whether the hardware alone or a measurement decided.
    """
    facts = machine()
    candidates = ["float32", "bfloat16"] if native_bf16(device, facts) else ["float32"]
    if device.type != "cpu":  # GPUs: bfloat16 where native (tensor cores), channels-last for them
        best = candidates[-1]
        return {"train_precision": best, "inference_precision": best, "channels_last": True,
                "basis": f"{device.type}: bfloat16 {'native' if best == 'bfloat16' else 'not native'}", "seconds": {}}
    key = _cache_key(facts, model)
    cache = read_json_cache(_path())
    if key in cache:
        return cache[key]
    choices = _measure(model, candidates)
    load = load_average()
    if load > BUSY_LOAD * available_cores():  # other work distorted the timings: good for this run only
        choices["basis"] += f" on a busy machine (load {load:.1f}), not cached"
        return choices
    cache[key] = choices
    write_json_cache(_path(), cache)
    return choices


def load_average() -> float:
    """The 1-minute load average (0 where the system does not report one)."""
    return getattr(os, "getloadavg", lambda: (0.0,))()[0]


def _measure(model, candidates) -> dict:
    """Time the inference encoder and a training step in each precision × layout, interleaved so
    that other work on the machine slows every candidate alike; the fastest wins."""
    from .nets import inference_encoder

    probes = {}
    for channels_last in (True, False):
        layout = torch.channels_last if channels_last else torch.contiguous_format
        x = torch.rand(4 * PROBE_BATCH, *model.spec.shape, generator=torch.Generator().manual_seed(0))
        x = x.contiguous(memory_format=layout)
        encoder = inference_encoder(model.encoder).to(memory_format=layout)
        nets = [copy.deepcopy(net).train().to(memory_format=layout) for net in (model.encoder, model.decoder)]
        for precision in candidates:
            probes[precision, channels_last] = _probes(encoder, nets, x, model.latent_dim, precision == "bfloat16")
    times = {key: [math.inf, math.inf] for key in probes}
    for _ in range(3):  # the first round builds the kernels and is kept only if it is the fastest
        for key, (infer, step) in probes.items():
            times[key] = [min(times[key][0], _seconds(infer)), min(times[key][1], _seconds(step))]
    infer_best = min(times, key=lambda k: _handicap(k, times[k][0]))
    train_best = min(times, key=lambda k: _handicap(k, times[k][1]))
    return {
        "train_precision": train_best[0],
        "inference_precision": infer_best[0],
        "channels_last": train_best[1],
        "basis": "measured" if len(candidates) > 1 else "bfloat16 not native here; layout measured",
        "seconds": {f"{kind} {p} {'channels_last' if cl else 'contiguous'}": round(t[i], 5)
                    for (p, cl), t in times.items() for i, kind in enumerate(("inference", "train"))},
    }


def _probes(encoder, nets, x, latent_dim, bf16):
    """An inference pass and a training step (forward and backward) of the networks."""

    def infer():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            encoder(x)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = nets[1](nets[0](x[:PROBE_BATCH])[:, :latent_dim]).float().square().mean()
        loss.backward()

    return infer, step


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _handicap(key, seconds: float) -> float:
    """A candidate's time, with bfloat16 made to win by a clear margin only."""
    return seconds * (BF16_MARGIN if key[0] == "bfloat16" else 1.0)


def _cache_key(facts, model) -> str:
    nets = [str(model.spec.shape), *(f"{n}:{tuple(p.shape)}" for n, p in model.named_parameters())]
    blob = json.dumps([CACHE_VERSION, facts, nets], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _path() -> Path:
    return cache_path().parent / "hardware.json"
