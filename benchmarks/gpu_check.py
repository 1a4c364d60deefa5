"""avae on one GPU: its GPU tests, then the training speed and memory of the paper's networks, in one run.

Sections, in this order; the JSON (OUT/gpu_check.json) is rewritten after every run, so a run cut short
still leaves what it measured, and a section that the time budget does not allow is skipped with its reason:

1. gpu_tests: `pytest -m gpu` (training and resume on CUDA, float32 KDE and losses under bfloat16
   autocast, `avae evaluate` of a GPU-trained run against a CPU-trained one, `auto` against a measurement).
2. mnist: the paper's MNIST setting (full width, l = 16, m = 10,000 re-encoded every 10 steps, batch 100)
   on Fashion-MNIST (the official files where installed, else synthetic 28×28×1 images zero-padded to
   32×32 as the loader pads them; the JSON says which): the AVAE, the VAE and the plain autoencoder with
   the same network, each in float32 and under bfloat16 autocast.
3. cifar10, celeba, disentangle: the same for the CIFAR-10 and CelebA networks (l = 128, m = 10,000) and
   the disentanglement network (dSprites' setting, l = 6), on synthetic images of their shapes.
4. memory: each run's peak GPU memory (torch.cuda.max_memory_allocated after reset_peak_memory_stats);
   profile: torch.profiler of one AVAE step that re-encodes the KDE set and one that does not (top
   kernels by CUDA time, the share of the step the GPU is busy), and the host-device synchronisations of
   one step.

Every run trains through avae's own Trainer (trainer.seeded_model, trainer.Trainer.fit): `--steps` SGD steps, the
first `--warmup` untimed; each step's end is timed after torch.cuda.synchronize (the re-encodings too).
Times are scaled to one epoch of the full dataset (its SGD steps and validation images), as each row says.

    OUT=/tmp/gpu bash benchmarks/gpu_check.sh                        # on the GPU machine (at most 8 minutes)
    python benchmarks/gpu_check.py --dry-run --out /tmp/gpuout       # every size shrunk: the script, checked on a CPU
"""
from __future__ import annotations

import argparse
import gc
import importlib
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import xml.etree.ElementTree as ElementTree
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # this checkout's avae, whether or not it is installed

import numpy as np  # noqa: E402
import torch  # noqa: E402

from avae import Callback, __version__, config, hardware, run, trainer  # noqa: E402
from avae.data import ArrayImages, Dataset, load_dataset  # noqa: E402
from avae.errors import AvaeError  # noqa: E402
from avae.models import data_spec, seeded_model  # noqa: E402

THREADS = 1  # torch threads of every run: `auto`'s number for this machine, read once at the start
PAPER_AVAE_OVER_VAE = 1.28  # the paper's AVAE epoch over its VAE epoch, same network (MNIST, on a GPU)
MODELS = ("avae", "vae", "ae")
PRECISIONS = ("float32", "bfloat16")


@dataclass(frozen=True)
class Setting:
    """One network's benchmark: the dataset preset whose per-model settings it takes, and the facts of
    the full dataset that an epoch is scaled to."""

    preset: str
    shape: tuple[int, int, int]  # what the network sees (C, H, W)
    latent_dim: int
    kde_size: int
    train_images: int  # the training split of the full dataset
    val_images: int  # its validation split
    likelihood: str
    value_range: tuple[float, float]
    note: str = ""


SETTINGS = {
    "mnist": Setting("fashion_mnist", (1, 32, 32), 16, 10000, 50000, 10000, "gaussian", (0.0, 1.0)),
    "cifar10": Setting("cifar10", (3, 32, 32), 128, 10000, 40000, 10000, "gaussian", (0.0, 1.0)),
    "celeba": Setting("celeba", (3, 64, 64), 128, 10000, 162770, 19867, "gaussian", (-1.0, 1.0),
                      note="l = 128, m = 10,000 as asked for this check; the paper's CelebA preset has l = 64, "
                           "m = 20,000"),
    "disentangle": Setting("dsprites", (1, 64, 64), 6, 10000, 717280, 20000, "bernoulli", (0.0, 1.0),
                           note="dSprites' setting and split (737,280 images, 20,000 for validation)"),
}


@dataclass(frozen=True)
class Sizes:
    """What a run trains: network width, batch, steps (the first `warmup` untimed), validation images."""

    width: float
    batch: int
    steps: int
    warmup: int
    val: int
    latent_dim: int | None  # None: each setting's own
    kde_size: int | None
    profile_steps: int


FULL = Sizes(width=1.0, batch=100, steps=320, warmup=20, val=2000, latent_dim=None, kde_size=None, profile_steps=30)
# --dry-run: every size shrunk (one latent size, so one bandwidth estimate); the KDE is still re-encoded
# every 10 steps, so a re-encoding falls inside the timed steps
DRY = Sizes(width=1 / 16, batch=16, steps=12, warmup=1, val=48, latent_dim=4, kde_size=100, profile_steps=22)


# --- the time budget and the JSON ---------------------------------------------------------------
class Budget:
    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()


class Report:
    """The result JSON, written atomically whenever something is added."""

    def __init__(self, path: Path, head: dict):
        self.path, self.data = path, head | {"sections": {}}

    def section(self, name: str) -> dict:
        return self.data["sections"].setdefault(name, {"status": "running"})

    def write(self, budget: Budget) -> None:
        self.data["elapsed_s"] = round(budget.elapsed(), 2)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        os.replace(tmp, self.path)


# --- timing one run --------------------------------------------------------------------------------
class StepClock(Callback):
    """The end of every step, after the GPU has finished it; the time of each KDE re-encoding and of
    each epoch-end hook (σ update, the autoencoder's Gaussian fit), each with the step it came at.
    `hooks` {step: [(when, fn)]} run at that step's end: 'stop' ones before the clock reads, 'start'
    ones after (a profiler around the next step)."""

    def __init__(self, device: torch.device, hooks: dict | None = None):
        self.device, self.hooks = device, hooks or {}
        self.ends: list[float] = []
        self.refreshes: list[tuple[int, float]] = []
        self.epoch_end: list[tuple[int, float]] = []
        self.start = None

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _timed(self, fn, log: list):
        def timed(*args, **kwargs):
            self.sync()
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            self.sync()
            log.append((len(self.ends), time.perf_counter() - start))
            return out

        return timed

    def on_train_start(self, info):
        model = info.model
        if hasattr(model, "refresh_kde_codes"):
            model.refresh_kde_codes = self._timed(model.refresh_kde_codes, self.refreshes)
        model.on_validation_end = self._timed(model.on_validation_end, self.epoch_end)

    @staticmethod
    def unwrap(model) -> None:
        """Drop the timed wrappers (each holds the model: a cycle that would keep its GPU memory)."""
        for name in ("refresh_kde_codes", "on_validation_end"):
            model.__dict__.pop(name, None)

    def on_epoch_start(self, info, epoch, steps, start):
        self.sync()
        self.start = time.perf_counter()

    def on_step_end(self, info, step, losses):
        hooks = self.hooks.get(step, [])
        for when, fn in hooks:
            if when == "stop":
                fn()
        self.sync()
        self.ends.append(time.perf_counter())
        for when, fn in hooks:
            if when == "start":
                fn()

    def step_seconds(self) -> list[float]:
        return list(np.diff([self.start, *self.ends]))


_DATA: dict = {}


def synthetic(setting: Setting, n: int, seed: int) -> np.ndarray:
    """n uniform random uint8 images of the setting's shape (MNIST: 28×28 zero-padded to 32×32, as the
    loader pads Fashion-MNIST); one array per setting, grown when a run needs more."""
    key = (setting.preset, seed)
    if key not in _DATA or len(_DATA[key]) < n:
        rng = np.random.default_rng(seed)
        c, h, w = setting.shape
        if setting.preset == "fashion_mnist":
            images = np.zeros((n, c, h, w), np.uint8)
            images[:, :, 2:-2, 2:-2] = rng.integers(0, 256, (n, c, h - 4, w - 4), dtype=np.uint8)
        else:
            images = rng.integers(0, 256, (n, c, h, w), dtype=np.uint8)
        _DATA[key] = images
    return _DATA[key][:n]


def fashion_mnist() -> Dataset | None:
    if "fashion_mnist" not in _DATA:
        try:
            _DATA["fashion_mnist"] = load_dataset("fashion_mnist")
        except AvaeError:
            _DATA["fashion_mnist"] = None
    return _DATA["fashion_mnist"]


def dataset(name: str, setting: Setting, n_train: int, n_val: int, real: bool) -> tuple[Dataset, str]:
    """The run's training and validation images, and what they are."""
    if real:
        fm = fashion_mnist()
        return (Dataset("fashion_mnist", fm.train.subset(np.arange(n_train)), fm.val.subset(np.arange(n_val)),
                        likelihood=fm.likelihood, value_range=fm.value_range, info=fm.info),
                "fashion_mnist: the official files (first images of its training and validation splits)")
    what = (f"synthetic: uniform random uint8 images of {setting.shape}"
            + (" (28×28×1 zero-padded to 32×32, as the Fashion-MNIST loader pads)" if name == "mnist" else ""))
    train_images = ArrayImages(synthetic(setting, n_train, 0))
    val_images = ArrayImages(synthetic(setting, n_val, 1))
    return (Dataset(f"synthetic-{name}", train_images, val_images, likelihood=setting.likelihood,
                    value_range=setting.value_range, info={"source": what}), what)


def run_config(setting: Setting, model: str, precision: str, sizes: Sizes, device: torch.device) -> dict:
    """The preset's settings for the model at this check's sizes; layout, re-encoding calls and
    threads left at `auto`."""
    latent = sizes.latent_dim or setting.latent_dim
    overrides = [f"data.name={setting.preset}", f"model.name={model}", f"model.latent_dim={latent}",
                 f"model.width={sizes.width}", f"train.batch_size={sizes.batch}", f"train.precision={precision}",
                 f"train.device={device}", f"train.threads={THREADS}", "train.epochs=1", "train.figures_every=0",
                 "train.progress=false", "train.checkpoint_minutes=1000"]
    if model == "avae":
        overrides += [f"model.kde_size={sizes.kde_size or setting.kde_size}", f"model.kde_precision={precision}"]
    return config.resolve(None, overrides)


def free(device: torch.device) -> int:
    """Let go of the last run's GPU memory and restart the peak count; returns the bytes still held."""
    if device.type != "cuda":
        return 0
    if torch.cuda.memory_allocated(device):
        gc.collect()  # (a second or so with torch loaded: only where a cycle still holds GPU tensors)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)


def train_run(name: str, setting: Setting, model_name: str, precision: str, sizes: Sizes, device: torch.device,
              real: bool, steps: int | None = None, hooks: dict | None = None, auto: bool = False) -> dict:
    """One run of `steps` SGD steps through avae's Trainer; its timings scaled to a full epoch."""
    steps = steps or sizes.steps
    cfg = run_config(setting, model_name, precision, sizes, device)
    m = cfg.params.kde_size if model_name == "avae" else 0
    data, what = dataset(name, setting, m + steps * sizes.batch, sizes.val, real)
    clock = StepClock(device, hooks)
    held_before = free(device)
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        run_dir = Path(tmp) / "run"
        model = seeded_model(cfg, data)
        loop = trainer.Trainer(cfg, run_dir, data, model, callbacks=[clock])
        would = hardware.fastest(model, device, sizes.batch) if auto else None  # what `auto` would take
        run.create(run.make_folder(run_dir), loop.cfg, data_spec(data), data.info, loop.auto, {})
        loop.fit()
        clock.sync()
        start = time.perf_counter()
        loop.validate()  # a second, warm validation pass: the epoch's, without first-call costs
        clock.sync()
        val_s = time.perf_counter() - start
        threads = loop.threads
        chosen = {"train.precision": loop.cfg.train.precision, "train.channels_last": loop.cfg.train.channels_last}
        if model_name == "avae":
            chosen |= {f"model.{k}": getattr(loop.cfg.params, k) for k in ("kde_precision", "kde_channels_last", "kde_batch")}
        clock.unwrap(model)
        del loop, model
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    reserved = torch.cuda.max_memory_reserved(device) if device.type == "cuda" else None

    warm = sizes.warmup
    ends = clock.ends
    window = ends[-1] - ends[warm - 1]
    timed_steps = len(ends) - warm
    refreshes = [s for step, s in clock.refreshes if step >= warm]
    # the full dataset's epoch: the AVAE takes SGD steps on the images outside its KDE set of m
    epoch_steps = math.ceil((setting.train_images - (setting.kde_size if model_name == "avae" else 0)) / sizes.batch)
    step_s = window / timed_steps
    end_hooks_s = sum(s for _, s in clock.epoch_end)  # σ update; the autoencoder's Gaussian fit on 10,000 codes
    row = {
        "status": "done",
        "timed_steps": timed_steps,
        "warmup_steps": warm,
        "step_ms": 1000 * step_s,
        "images_per_s": timed_steps * sizes.batch / window,
        "epoch_steps": epoch_steps,
        "train_epoch_s": step_s * epoch_steps,
        "val_s_per_image_ms": 1000 * val_s / sizes.val,
        "epoch_s": step_s * epoch_steps + val_s * setting.val_images / sizes.val + end_hooks_s,
        "epoch_end_hooks_s": end_hooks_s,
        "scaled": (f"{timed_steps} timed steps (after {warm} untimed) scaled to {epoch_steps} steps; validation of "
                   f"{sizes.val} images scaled to {setting.val_images}"),
        "wall_s": time.perf_counter() - wall,
        "peak_memory_bytes": peak,
        "peak_reserved_bytes": reserved,
        "held_before_bytes": held_before if device.type == "cuda" else None,
        "threads": threads,
        "settings": chosen,
    }
    if model_name == "avae":
        kde = sizes.kde_size or setting.kde_size
        row |= {"reencodings_timed": len(refreshes), "reencoding_s": sum(refreshes),
                "reencoding_share": sum(refreshes) / window,
                "reencoding_images_per_s": kde * len(refreshes) / sum(refreshes) if refreshes else None,
                "step_ms_without_reencoding": 1000 * (window - sum(refreshes)) / timed_steps}
    if would is not None:
        row["auto_would_choose"] = {k: would[k] for k in ("train_precision", "channels_last", "inference_precision",
                                                          "inference_channels_last", "inference_batch", "basis")}
    row["data"] = what
    row["_clock"] = clock  # for the profile section; removed before writing
    return row


# --- sections --------------------------------------------------------------------------------------
def gpu_tests(args, out: Path, budget: Budget, reserve: float) -> dict:
    """`pytest -m gpu` in a child process; per-test outcomes from its JUnit XML."""
    try:
        importlib.import_module("pytest")
    except ImportError:
        return {"status": "skipped", "reason": "pytest is not installed here"}
    limit = min(args.tests_timeout, budget.left() - reserve)
    if limit < 30:
        return {"status": "skipped", "reason": f"time budget: {budget.left():.0f} s left"}
    xml = out / "gpu_tests.xml"
    env = {k: v for k, v in os.environ.items() if k != "AVAE_TEST_DEVICE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "pytest", "-m", "gpu", *args.tests.split(","), "-q", "-rfEs",
               "-p", "no:cacheprovider", "--continue-on-collection-errors", f"--junitxml={xml}"]
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=limit)
        code, log = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        code, log = None, f"timed out after {limit:.0f} s\n" + (e.stdout or b"").decode(errors="replace")
    (out / "gpu_tests.log").write_text(log)
    result = {"status": "done" if code is not None else "timed out", "command": " ".join(command[1:]),
              "exit_code": code, "seconds": time.perf_counter() - start, "log_tail": log[-3000:]}
    tests = {}
    if xml.is_file():
        for case in ElementTree.parse(xml).iter("testcase"):
            outcome = "passed"
            for kind in ("failure", "error", "skipped"):
                node = case.find(kind)
                if node is not None:
                    outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[kind]
                    message = (node.get("message") or node.text or "")[:500]
                    break
            tests[f"{case.get('classname')}::{case.get('name')}"] = {
                "outcome": outcome, "seconds": float(case.get("time") or 0),
                **({"message": message} if outcome != "passed" else {})}
    counts = Counter(t["outcome"] for t in tests.values())
    # errors: a test's setup failed, or a test module did not import (an optional package missing here)
    result |= {"passed": counts["passed"], "failed": counts["failed"], "errors": counts["error"],
               "skipped": counts["skipped"], "tests": tests}
    if code not in (0, 5) and code is not None and not tests:  # 5: no test selected
        result["status"] = "error"
    return result


def network_section(name: str, args, sizes: Sizes, device: torch.device, report: Report, budget: Budget,
                    reserve: float, real: bool, rows_out: dict) -> None:
    setting = SETTINGS[name]
    section = report.section(name)
    latent, kde = sizes.latent_dim or setting.latent_dim, sizes.kde_size or setting.kde_size
    section |= {"setting": (f"{setting.preset}'s preset, network '{'mnist' if name == 'mnist' else name}' at width "
                            f"{sizes.width:g}, l = {latent}, m = {kde} re-encoded every 10 steps, batch {sizes.batch}, "
                            f"{sizes.steps} SGD steps per run"),
                "full_epoch": {"train_images": setting.train_images, "val_images": setting.val_images},
                "runs": {}}
    if setting.note:
        section["note"] = setting.note
    runs = section["runs"]
    first_guess = 20.0 if not args.dry_run else 2.0  # seconds a run takes, until one has been timed
    for model_name in MODELS:
        for precision in PRECISIONS:
            key = f"{model_name} {precision}"
            if precision == "bfloat16" and not hardware.native_bf16(device) and not args.dry_run:
                runs[key] = {"status": "skipped", "reason": f"bfloat16 is not native on {device.type} here"}
                continue
            walls = [r["wall_s"] for r in runs.values() if r.get("status") == "done"]
            estimate = max(walls, default=first_guess)
            if budget.left() - reserve < 1.5 * estimate:
                runs[key] = {"status": "skipped", "reason": f"time budget: {budget.left():.0f} s left, a run takes "
                                                            f"about {estimate:.0f} s"}
                continue
            try:
                row = train_run(name, setting, model_name, precision, sizes, device, real,
                                auto=model_name == "avae" and precision == PRECISIONS[0])
                row.pop("_clock")
                section.setdefault("data", row.pop("data"))
                if "auto_would_choose" in row:
                    section["auto"] = {"would_choose": row.pop("auto_would_choose")}
                runs[key] = row
                rows_out[name, key] = row
                print(f"{name:<12} {key:<18} {row['images_per_s']:9.0f} img/s  epoch {row['epoch_s']:8.1f} s"
                      + (f"  re-encoding {100 * row['reencoding_share']:4.1f}%" if "reencoding_share" in row else "")
                      + (f"  peak {row['peak_memory_bytes'] / 2**20:7.0f} MiB" if row["peak_memory_bytes"] else ""),
                      flush=True)
            except Exception as e:  # one failing run must not cost the others
                runs[key] = {"status": "error", "error": f"{type(e).__name__}: {e}",
                             "traceback": traceback.format_exc()[-2000:]}
                print(f"{name:<12} {key:<18} error: {type(e).__name__}: {e}", flush=True)
            report.write(budget)
    section["ratios"] = ratios(runs)
    if "auto" in section:
        section["auto"] |= auto_agreement(section["auto"]["would_choose"], runs)
    done = [r for r in runs.values() if r.get("status") == "done"]
    section["status"] = "done" if len(done) == len(runs) else ("partial" if done else "skipped")
    if not done:
        section["reason"] = "no run finished (each run says why)"
    report.write(budget)


def ratios(runs: dict) -> dict:
    out = {}
    for precision in PRECISIONS:
        r = {m: runs.get(f"{m} {precision}", {}) for m in MODELS}
        if all(x.get("status") == "done" for x in r.values()):
            out[precision] = {
                "avae_over_vae_epoch": r["avae"]["epoch_s"] / r["vae"]["epoch_s"],
                "avae_over_ae_epoch": r["avae"]["epoch_s"] / r["ae"]["epoch_s"],
                "avae_over_vae_step": r["avae"]["step_ms"] / r["vae"]["step_ms"],
                "paper_avae_over_vae_epoch": PAPER_AVAE_OVER_VAE,
            }
    for model in MODELS:
        a, b = runs.get(f"{model} float32", {}), runs.get(f"{model} bfloat16", {})
        if a.get("status") == b.get("status") == "done":
            out.setdefault("bfloat16_speedup", {})[model] = a["epoch_s"] / b["epoch_s"]
    return out


def auto_agreement(would: dict, runs: dict) -> dict:
    """Whether `auto`'s precision is the faster one measured (within hardware.BF16_MARGIN)."""
    epochs = {p: runs.get(f"avae {p}", {}).get("epoch_s") for p in PRECISIONS}
    epochs = {p: s for p, s in epochs.items() if s}
    if not epochs:
        return {}
    fastest = min(epochs, key=epochs.get)
    picked = epochs.get(would["train_precision"])
    return {"measured_faster_precision": fastest, "avae_epoch_s": epochs,
            "agrees": picked is not None and picked <= hardware.BF16_MARGIN * epochs[fastest]}


def memory_section(rows: dict, device: torch.device) -> dict:
    peaks: dict = {}
    for (name, key), row in rows.items():
        peaks.setdefault(name, {})[key] = row["peak_memory_bytes"]
    known = [(v, n, k) for n, d in peaks.items() for k, v in d.items() if v is not None]
    out = {"status": "done", "what": "torch.cuda.max_memory_allocated after reset_peak_memory_stats, per run "
                                     "(training, validation, checkpoint)", "peak_bytes": peaks}
    if known:
        v, n, k = max(known)
        out["largest"] = {"run": f"{n} {k}", "bytes": v, "of_device_bytes": torch.cuda.get_device_properties(device).total_memory}
    if device.type != "cuda":
        out["note"] = "the CPU has no GPU memory to measure (values null)"
    return out


def top_events(prof, device: torch.device, count: int = 15) -> dict:
    """The profile's top kernels by CUDA time (on a CPU: operators by CPU time)."""
    events = list(prof.key_averages())
    if device.type == "cuda":  # the kernels and copies themselves (an operator's device time is its kernels')
        timed = [(e, e.self_device_time_total) for e in events
                 if e.device_type != torch.autograd.DeviceType.CPU and e.self_device_time_total > 0]
        by = "self CUDA time (kernels, copies)"
    else:
        timed = [(e, e.self_cpu_time_total) for e in events if e.self_cpu_time_total > 0]
        by = "self CPU time (operators)"
    total = sum(t for _, t in timed)
    timed.sort(key=lambda et: -et[1])
    top = [{"name": e.key[:160], "calls": e.count, "ms": t / 1000, "share": t / total} for e, t in timed[:count]]
    host = sorted(events, key=lambda e: -e.self_cpu_time_total)[:8]
    return {"by": by, "total_ms": total / 1000, "top": top,
            "host_top": [{"name": e.key[:160], "calls": e.count, "cpu_ms": e.self_cpu_time_total / 1000} for e in host]}


def profile_section(args, sizes: Sizes, device: torch.device, real: bool, precision: str) -> dict:
    """An AVAE run of the MNIST setting: step 10 (it re-encodes the KDE set) and step 11 profiled, the
    synchronisations of step 12 counted, the other steps timed without a profiler."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    profiles, syncs, sync_state = {}, [], {}

    def start_profile(name):
        def go():
            profiles[name] = profile(activities=activities)
            profiles[name].start()
        return go

    def stop_profile(name):
        return lambda: profiles[name].stop()

    def start_syncs():
        if device.type == "cuda":
            sync_state["catch"] = warnings.catch_warnings(record=True)
            sync_state["log"] = sync_state["catch"].__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")

    def stop_syncs():
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode(0)
            sync_state["catch"].__exit__(None, None, None)
            syncs.extend(w for w in sync_state["log"] if "synchroniz" in str(w.message))

    hooks = {9: [("start", start_profile("step_with_reencoding"))],
             10: [("stop", stop_profile("step_with_reencoding")), ("start", start_profile("step_without"))],
             11: [("stop", stop_profile("step_without")), ("start", start_syncs)],
             12: [("stop", stop_syncs)]}
    row = train_run("mnist", SETTINGS["mnist"], "avae", precision, sizes, device, real, steps=sizes.profile_steps,
                    hooks=hooks)
    clock = row.pop("_clock")
    durations = clock.step_seconds()
    plain = [d for i, d in enumerate(durations) if i > 12 and i % 10]  # unprofiled steps without a re-encoding
    with_reencoding = [d for i, d in enumerate(durations) if i > 12 and i % 10 == 0]
    out = {"status": "done", "precision": precision,
           "setting": f"the mnist section's AVAE ({precision}); steps 10 and 11 under torch.profiler",
           "unprofiled_step_ms": statistics.median(plain) * 1000 if plain else None,
           "unprofiled_step_with_reencoding_ms": statistics.median(with_reencoding) * 1000 if with_reencoding else None}
    for name, prof in profiles.items():
        out[name] = top_events(prof, device)
    for name, step_ms in (("step_with_reencoding", out["unprofiled_step_with_reencoding_ms"]),
                          ("step_without", out["unprofiled_step_ms"])):
        if step_ms and device.type == "cuda":
            busy = out[name]["total_ms"] / step_ms
            out[name]["gpu_busy_share"] = busy
            out[name]["limited_by"] = ("the GPU's kernels" if busy > 0.8 else
                                       "the host: Python, kernel launches and synchronisations" if busy < 0.5 else
                                       "both: the GPU idles for part of each step")
    if device.type == "cuda":
        places = Counter(f"{Path(w.filename).name}:{w.lineno}" for w in syncs)
        out["synchronisations_per_step"] = {"count": len(syncs), "where": dict(places.most_common(20))}
    else:
        out["synchronisations_per_step"] = {"note": "counted on CUDA only (torch.cuda.set_sync_debug_mode)"}
    return out


# --- the whole check -------------------------------------------------------------------------------
def environment(device: torch.device) -> dict:
    facts = {"type": device.type, "machine": hardware.machine(), "torch": torch.__version__, "avae": __version__,
             "python": platform.python_version(), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        facts |= {"gpu": p.name, "capability": f"{p.major}.{p.minor}", "memory_bytes": p.total_memory,
                  "multiprocessors": p.multi_processor_count, "cuda": torch.version.cuda,
                  "cudnn": torch.backends.cudnn.version(), "bf16_native": hardware.native_bf16(device),
                  "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32},
                  "cudnn_benchmark": torch.backends.cudnn.benchmark}
    versions = {}
    for name in ("numpy", "scipy", "sklearn", "matplotlib", "yaml", "PIL", "tqdm", "pytest"):
        try:
            versions[name] = getattr(importlib.import_module(name), "__version__", "?")
        except ImportError:
            versions[name] = None
    facts["packages"] = versions
    try:
        facts["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                         timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        facts["commit"] = None
    return facts


SECTION_ORDER = ["gpu_tests", "mnist", "cifar10", "celeba", "disentangle", "memory", "profile"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or REPO / "benchmarks/results/gpu_check"),
                        help="folder for gpu_check.json and the test log (default $OUT)")
    parser.add_argument("--dry-run", action="store_true", help="every size shrunk: checks the script in a minute on a CPU")
    parser.add_argument("--device", default="auto", help="auto (cuda where available), cuda, cuda:N or cpu")
    parser.add_argument("--budget", type=float, default=450, help="seconds; later runs and sections are skipped near it")
    parser.add_argument("--sections", default=",".join(SECTION_ORDER), help="sections to run, of: " + ",".join(SECTION_ORDER))
    parser.add_argument("--mnist-data", choices=("auto", "real", "synthetic"), default="auto",
                        help="Fashion-MNIST's official files (auto: where installed) or synthetic images")
    parser.add_argument("--tests", default=None, help="paths for `pytest -m gpu` (default: tests; dry run: tests/test_gpu.py)")
    parser.add_argument("--tests-timeout", type=float, default=200, help="seconds for the GPU tests")
    args = parser.parse_args(argv)
    args.tests = args.tests or ("tests/test_gpu.py" if args.dry_run else "tests")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: use --device cpu (with --dry-run)", file=sys.stderr)
        return 2
    sizes = DRY if args.dry_run else FULL
    wanted = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(wanted) - set(SECTION_ORDER))
    if unknown:
        parser.error(f"unknown sections {unknown}; known: {SECTION_ORDER}")
    args.out.mkdir(parents=True, exist_ok=True)
    budget = Budget(args.budget)
    global THREADS
    THREADS = hardware.threads()  # the trainer would read it anew for every run and epoch (0.1 s each)
    torch.set_num_threads(THREADS)
    real = args.mnist_data == "real" or (args.mnist_data == "auto" and fashion_mnist() is not None)
    if real and fashion_mnist() is None:
        parser.error("--mnist-data real: Fashion-MNIST is not installed here")
    report = Report(args.out / "gpu_check.json", {
        "script": "benchmarks/gpu_check.py", "command": " ".join(["python", *sys.argv]), "dry_run": args.dry_run,
        "budget_s": args.budget, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": environment(device),
        "sizes": sizes.__dict__,
    })
    for name in SECTION_ORDER:  # every section named in the JSON from the start, in order
        report.section(name)["status"] = "pending" if name in wanted else "not asked for"
    report.write(budget)

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    scale = 0.1 if args.dry_run else 1.0
    reserve = {"profile": 25 * scale + 5, "sections": 5}  # the profile runs last: time is kept for it
    rows: dict = {}
    try:
        if "gpu_tests" in wanted:
            print("gpu_tests: pytest -m gpu ...", flush=True)
            report.data["sections"]["gpu_tests"] = gpu_tests(args, args.out, budget, reserve["profile"] + 60 * scale)
            t = report.data["sections"]["gpu_tests"]
            print(f"gpu_tests: {t['status']}, {t.get('passed', 0)} passed, {t.get('failed', 0)} failed, "
                  f"{t.get('errors', 0)} errors, {t.get('skipped', 0)} skipped", flush=True)
            report.write(budget)
        for name in ("mnist", "cifar10", "celeba", "disentangle"):
            if name in wanted:
                network_section(name, args, sizes, device, report, budget, reserve["profile"], real and name == "mnist",
                                rows)
        if "memory" in wanted:
            report.data["sections"]["memory"] = memory_section(rows, device)
            report.write(budget)
        if "profile" in wanted:
            if budget.left() < reserve["profile"] - 5:
                report.data["sections"]["profile"] = {"status": "skipped", "reason": f"time budget: {budget.left():.0f} s left"}
            else:
                mnist = report.data["sections"].get("mnist", {})
                precision = (mnist.get("auto", {}).get("measured_faster_precision")
                             or ("bfloat16" if hardware.native_bf16(device) else "float32"))
                try:
                    report.data["sections"]["profile"] = profile_section(args, sizes, device, real, precision)
                except Exception as e:
                    report.data["sections"]["profile"] = {"status": "error", "error": f"{type(e).__name__}: {e}",
                                                          "traceback": traceback.format_exc()[-2000:]}
            report.write(budget)
    except (SystemExit, KeyboardInterrupt) as e:
        report.data["interrupted"] = f"{type(e).__name__} {getattr(e, 'code', '')} after {budget.elapsed():.0f} s"
        for section in report.data["sections"].values():
            if section.get("status") in ("pending", "running"):
                done = any(r.get("status") == "done" for r in section.get("runs", {}).values())
                section["status"] = "partial" if done else "skipped"
                section["reason"] = "interrupted"
        report.write(budget)
        raise
    summary(report.data)
    print(f"written: {report.path}")
    return 0


def summary(result: dict) -> None:
    print(f"\n{'section':<12} status   (device {result['device'].get('gpu') or result['device']['type']}, "
          f"{result['elapsed_s']:.0f} s)")
    for name, section in result["sections"].items():
        print(f"{name:<12} {section.get('status')}" + (f" ({section['reason']})" if "reason" in section else ""))
        if name == "gpu_tests" and "tests" in section:
            print(f"   {section['passed']} passed, {section['failed']} failed, {section['errors']} errors, "
                  f"{section['skipped']} skipped")
            for test, t in section["tests"].items():
                if t["outcome"] in ("failed", "error"):
                    print(f"   {t['outcome']}: {test}: {t.get('message', '')[:150]}")
        for precision, r in section.get("ratios", {}).items():
            if precision in PRECISIONS:
                print(f"   {precision}: AVAE/VAE epoch {r['avae_over_vae_epoch']:.2f} (paper {PAPER_AVAE_OVER_VAE}), "
                      f"AVAE/AE {r['avae_over_ae_epoch']:.2f}")
        if "auto" in section and "agrees" in section["auto"]:
            a = section["auto"]
            print(f"   auto takes {a['would_choose']['train_precision']}, measured faster: "
                  f"{a['measured_faster_precision']} (agrees: {a['agrees']})")
        for step in ("step_with_reencoding", "step_without"):
            if step in section:
                s = section[step]
                print(f"   {step}: {s['total_ms']:.1f} ms ({s['by']}); top: {s['top'][0]['name'][:70]}"
                      + (f"; GPU busy {100 * s['gpu_busy_share']:.0f}%" if "gpu_busy_share" in s else ""))


if __name__ == "__main__":
    sys.exit(main())
