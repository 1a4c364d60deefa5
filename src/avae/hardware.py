"""What `auto` means on the machine at hand: precision, memory layout and threads.

bfloat16 is a candidate only where the hardware computes it natively (AVX-512 BF16 or AMX on
x86, the bf16 extension on Arm, compute capability ≥ 8 on CUDA); elsewhere it is emulated and
many times slower than float32. On a quiet CPU a short measurement of the model's own networks
then decides between the candidates and the two memory layouts, for training (at the run's batch
size) and for inference, and the number of images an inference call takes: a batch whose
activations stay in the caches can run twice as fast as a large one. Where other work keeps the
machine busy, timings are noise, so fixed rules for the CPU's capability decide instead. Either
choice is cached per machine (CPU model, torch's capability, cores, the environment variables
that limit the instruction set, torch version), network and batch size, so every later run —
the other models of a comparison, a resume — gets the same one.

Threads are not cached: they follow the cores that other work leaves free, read anew every epoch.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import platform
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from .kde_bandwidth import cache_path, read_json_cache, write_json_cache
from .machine_load import QUIET_SHARE, available_cores, busy_cores

AUTO = "auto"
# environment variables that change which kernels run (set them to emulate a smaller CPU)
KERNEL_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
                    "OMP_NUM_THREADS")
NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # /proc/cpuinfo names (x86 and Arm)
BF16_MARGIN = 1.15  # bfloat16 must beat float32 by this factor: a near tie keeps the exact float32
PROBE_BATCH = 64  # images per timed inference pass while precision and layout are chosen
MAX_TRAIN_PROBE = 128  # the timed training step takes the run's batch, up to this many images
INFERENCE_BATCHES = (64, 256, 1024)  # images per inference call, each timed on the last of them
CACHE_VERSION = 3


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
    """torch's intra-op threads: OMP_NUM_THREADS where set (torchrun sets it), else the cores this
    process may use, shared among the processes of this machine, less those other work keeps busy
    now. Each operation waits for its slowest thread, so a thread on a core that other work holds
    slows every step: where fewer than two cores are free, one thread is the fastest."""
    if "OMP_NUM_THREADS" in os.environ:
        return torch.get_num_threads()
    return _free_threads(busy_cores())


def _free_threads(busy: float) -> int:
    cores = available_cores()
    share = max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(share, math.floor(cores - busy + 0.5)))


@contextmanager
def one_thread():
    """torch on one thread, restored afterwards, for training small helper networks (the neural
    samplers, the feature classifier): a sum splits differently over other thread counts, so one
    thread makes the trained weights independent of the machine's load (same data, settings and
    seed, same weights); and such small steps run faster on one thread than on several that wait
    on each other (the flow: 5–13× faster on a busy 2-core machine; on a quiet one 63 s against two
    threads' 57 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def threads_warning(asked: int) -> str | None:
    """One line where train.threads asks for more threads than the cores other work leaves free
    (what `auto` would take now), else None."""
    busy = busy_cores()
    free = _free_threads(busy)
    if asked <= free:
        return None
    return (f"train.threads={asked} is more than the {free} core(s) free for this process (of {available_cores()}; "
            f"other work keeps {busy:.1f} busy): every operation waits for its slowest thread, so "
            f"train.threads={free} (what auto takes now) is likely faster")


def apply(cfg, model, choices: dict):
    """The Config with its `auto` settings (and its model's) made concrete by the choices of `fastest`
    (the model's params become new ones too), and {"section.setting": value} of what was chosen."""
    train = {key: value for key, value in (("precision", choices["train_precision"]),
                                           ("channels_last", choices["channels_last"]))
             if getattr(cfg.train, key) in (AUTO, None)}  # channels_last and threads spell auto as null
    own = model.resolve_auto(choices)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train), params=model.params)
    return cfg, {**{f"train.{k}": v for k, v in train.items()}, **{f"model.{k}": v for k, v in own.items()}}


def fastest(model, device: torch.device, batch_size: int, progress: bool = False) -> dict:
    """Precision and memory layout for training a model's networks here at `batch_size`, and
    precision, layout and images per call for its inference encoder.

    Returns {"train_precision", "channels_last", "inference_precision", "inference_channels_last",
    "inference_batch", "basis", "seconds"}: basis says whether the hardware alone or a
    measurement decided.
    """
    facts = machine()
    candidates = ["float32", "bfloat16"] if native_bf16(device, facts) else ["float32"]
    if device.type != "cpu":  # GPUs: bfloat16 where native (tensor cores), channels-last, large calls
        best = candidates[-1]
        return {"train_precision": best, "channels_last": True, "inference_precision": best,
                "inference_channels_last": True, "inference_batch": INFERENCE_BATCHES[-1],
                "basis": f"{device.type}: bfloat16 {'native' if best == 'bfloat16' else 'not native'}", "seconds": {}}
    train_batch = min(batch_size, MAX_TRAIN_PROBE)
    key = _cache_key(facts, model, train_batch)
    cache = read_json_cache(_path())
    if key in cache:
        return cache[key]
    busy = busy_cores()
    if busy > QUIET_SHARE * facts["cores"]:
        choices = rules(candidates, f"rules for {facts['capability']}: other work kept {busy:.1f} of "
                                    f"{facts['cores']} cores busy")
    else:
        if progress:
            print(f"auto: timing {' and '.join(candidates)} training steps and re-encodings in both memory layouts "
                  f"on this CPU, once (cached in {_path()})", file=sys.stderr, flush=True)
        choices = _measure(model, candidates, train_batch)
    cache[key] = choices
    write_json_cache(_path(), cache)
    return choices


def rules(candidates: list[str], basis: str) -> dict:
    """The choice without a measurement: float32 training (bfloat16 wins there only on some
    networks), bfloat16 re-encoding where native, channels-last, 256 images a call (what the
    measurements in BENCHMARKS.md chose most often on AVX2 and AVX-512 CPUs)."""
    return {"train_precision": "float32", "channels_last": True, "inference_precision": candidates[-1],
            "inference_channels_last": True, "inference_batch": 256, "basis": basis, "seconds": {}}


def _measure(model, candidates, train_batch: int) -> dict:
    """Time the inference encoder and a training step in each precision × layout, then the
    inference encoder's best precision and layout at each of INFERENCE_BATCHES images per call.
    Candidates take turns, so that other work on the machine slows each alike; the fastest wins."""
    from .nets import inference_encoder

    images = torch.rand(max(train_batch, INFERENCE_BATCHES[-1]), *model.spec.shape,
                        generator=torch.Generator().manual_seed(0))
    probes, inference = {}, {}  # inference: layout → (the inference encoder, images) in that layout
    for channels_last in (True, False):
        layout = torch.channels_last if channels_last else torch.contiguous_format
        x = images.contiguous(memory_format=layout)
        inference[channels_last] = (inference_encoder(model.encoder).to(memory_format=layout), x)
        nets = [copy.deepcopy(net).train().to(memory_format=layout) for net in (model.encoder, model.decoder)]
        for precision in candidates:
            bf16 = precision == "bfloat16"
            probes["inference", precision, channels_last] = encode_in_calls(
                inference[channels_last][0], x[:PROBE_BATCH], PROBE_BATCH, bf16)
            probes["train", precision, channels_last] = _train_step(nets, x[:train_batch], model.latent_dim, bf16)
    times = best_times(probes, rounds=3)  # the first round builds the kernels, kept only if it is the fastest
    train_best = min((k for k in times if k[0] == "train"), key=lambda k: _handicap(k, times[k]))
    infer_best = min((k for k in times if k[0] == "inference"), key=lambda k: _handicap(k, times[k]))
    _, precision, channels_last = infer_best
    encoder, x = inference[channels_last]
    per_call = {("inference", precision, channels_last, batch): encode_in_calls(
        encoder, x[: INFERENCE_BATCHES[-1]], batch, precision == "bfloat16") for batch in INFERENCE_BATCHES}
    batch_times = best_times(per_call, rounds=2)
    times |= batch_times
    return {
        "train_precision": train_best[1],
        "channels_last": train_best[2],
        "inference_precision": precision,
        "inference_channels_last": channels_last,
        "inference_batch": min(batch_times, key=batch_times.get)[3],
        "basis": "measured" if len(candidates) > 1 else "bfloat16 not native here; layout measured",
        "seconds": {_label(key, train_batch): round(t, 5) for key, t in times.items()},
    }


def best_times(probes: dict, rounds: int) -> dict:
    """The shortest of `rounds` timings of each probe, the probes taking turns."""
    times = dict.fromkeys(probes, math.inf)
    for _ in range(rounds):
        for key, probe in probes.items():
            times[key] = min(times[key], seconds_of(probe))
    return times


def _label(key, train_batch: int) -> str:
    kind, precision, channels_last, *per_call = key
    layout = "channels_last" if channels_last else "contiguous"
    if per_call:
        return f"{kind} {precision} {layout} {INFERENCE_BATCHES[-1]} images in calls of {per_call[0]}"
    return f"{kind} {precision} {layout} batch {PROBE_BATCH if kind == 'inference' else train_batch}"


def encode_in_calls(encoder, x, batch: int, bf16: bool):
    """A probe: encoding x in calls of `batch` images, as the KDE refresh does."""

    def infer():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for i in range(0, len(x), batch):
                encoder(x[i : i + batch])

    return infer


def _train_step(nets, x, latent_dim: int, bf16: bool):
    """A training step's forward and backward pass through encoder and decoder."""

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = nets[1](nets[0](x)[:, :latent_dim]).float().square().mean()
        loss.backward()

    return step


def seconds_of(fn) -> float:
    """The wall seconds one call of `fn` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _handicap(key, seconds: float) -> float:
    """A candidate's time, with bfloat16 made to win by a clear margin only."""
    return seconds * (BF16_MARGIN if key[1] == "bfloat16" else 1.0)


def _cache_key(facts, model, train_batch: int) -> str:
    """The machine, the network and the batch: the decoder's shapes and the encoder's but for its
    output layer, whose width differs between models of one comparison (2l for Gaussian encoders)."""
    encoder = [f"{n}:{tuple(p.shape)}" for n, p in model.encoder.named_parameters()]
    nets = [str(model.spec.shape), model.arch, *encoder[:-2], *(f"{n}:{tuple(p.shape)}" for n, p in
                                                               model.decoder.named_parameters())]
    blob = json.dumps([CACHE_VERSION, facts, nets, train_batch], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _path() -> Path:
    return cache_path().parent / "hardware.json"
