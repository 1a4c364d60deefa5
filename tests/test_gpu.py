"""The tests that need a GPU (`pytest -m gpu`; skipped where CUDA is not available), and a CPU check
that the GPU benchmark script still runs end to end (`benchmarks/gpu_check.py --dry-run`).

AVAE_TEST_DEVICE=cpu runs the GPU tests on the CPU, which checks the tests themselves on a machine
without a GPU (their comparisons of two devices then compare the CPU with itself).
"""
import copy
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from avae import Callback, config, hardware, nets, run, trainer
from avae.cli import main
from avae.data import ArrayImages, load_data, to_float
from avae.models import DataSpec, TrainContext, build_model

DEVICE = os.environ.get("AVAE_TEST_DEVICE", "cuda")
HAVE_DEVICE = torch.cuda.is_available() if DEVICE.startswith("cuda") else True
REPO = Path(__file__).resolve().parents[1]


def needs_gpu(test):
    return pytest.mark.gpu(pytest.mark.skipif(not HAVE_DEVICE, reason="needs a CUDA GPU")(test))


def tiny(root, *extra):
    """The tiny MNIST-format AVAE of test_train.py on DEVICE (one torch thread: CPU sums in one order)."""
    return ["data.name=mnist", f"data.root={root}", "model.name=avae", "model.latent_dim=4", "model.width=0.125",
            "model.kde_size=100", "model.kde_refresh_every=3", "train.batch_size=50", "train.progress=false",
            "train.figures_every=0", "train.threads=1", f"train.device={DEVICE}", *extra]


class Watch(Callback):
    """Where training ran: the device of the parameters and of each step's loss; stops at a given step."""

    def __init__(self, stop_after: int | None = None):
        self.stop_after, self.steps, self.devices = stop_after, 0, set()

    def on_step_end(self, info, step, losses):
        self.steps += 1
        self.devices |= {next(info.model.parameters()).device.type, losses["loss"].device.type}
        assert losses["loss"].dtype == torch.float32
        if self.steps == self.stop_after:
            raise KeyboardInterrupt  # as Ctrl-C would: the run is marked interrupted and resumes


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def finite_tensors(tree) -> bool:
    if torch.is_tensor(tree):
        return not tree.is_floating_point() or bool(torch.isfinite(tree).all())
    if isinstance(tree, dict):
        return all(finite_tensors(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return all(finite_tensors(v) for v in tree)
    return not isinstance(tree, float) or math.isfinite(tree)


# --- training and resuming on the GPU -------------------------------------------------------------
@needs_gpu
def test_training_and_resume_on_the_gpu_give_finite_resumable_state(mnist_root, tmp_path, monkeypatch):
    # precision, layout and re-encoding calls left at `auto`: what a GPU run gets by default; cuDNN held to
    # its deterministic kernels, so that the two runs differ by a lost state, not by the order of atomic sums
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    settings = tiny(mnist_root, "train.epochs=2", "train.checkpoint_minutes=0")
    whole_watch = Watch()
    whole = trainer.start(config.resolve(None, settings), tmp_path / "whole", [whole_watch])
    assert whole_watch.devices == {torch.device(DEVICE).type}  # the steps ran on the GPU, not on the CPU

    stopped = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        trainer.start(config.resolve(None, settings), stopped, [Watch(stop_after=8 + 5)])  # step 5 of epoch 2
    assert json.loads((stopped / "run.json").read_text())["status"] == "interrupted"
    state = torch.load(stopped / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 3)  # mid-epoch, aligned to the KDE refresh
    assert finite_tensors(state["model"]) and finite_tensors(state["optimizer"]["state"])
    assert all(t.device.type == "cpu" for t in state["model"].values())  # it opens on a machine without a GPU

    resumed_watch = Watch()
    trainer.resume(stopped, [resumed_watch])
    assert resumed_watch.devices == {torch.device(DEVICE).type} and resumed_watch.steps == 8 - 3
    assert [r["epoch"] for r in metrics(stopped)] == [1, 2]
    a = torch.load(whole / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["model"]
    b = torch.load(stopped / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["model"]
    assert a.keys() == b.keys() and finite_tensors(b)
    for key in a:  # a lost optimizer state, σ or KDE set would differ by ~lr = 5e-4 a step
        torch.testing.assert_close(b[key], a[key], rtol=1e-3, atol=1e-4, msg=key)
    for key in ("val_recon", "val_kl", "sigma"):
        assert metrics(stopped)[-1][key] == pytest.approx(metrics(whole)[-1][key], rel=1e-3, abs=1e-4), key


# --- float32 KDE and losses under bfloat16 autocast ----------------------------------------------
def autocast_devices():
    return ["cpu", pytest.param(DEVICE, marks=[pytest.mark.gpu, pytest.mark.skipif(not HAVE_DEVICE,
                                                                                   reason="needs a CUDA GPU")])]


@pytest.mark.parametrize("device", autocast_devices())
def test_kde_and_losses_stay_float32_under_bfloat16_autocast(device):
    device = torch.device(device)
    spec = DataSpec((1, 32, 32), "gaussian", (0.0, 1.0), 2000)
    torch.manual_seed(0)
    model = build_model({"name": "avae", "latent_dim": 16, "width": 0.25, "kde_size": 200, "kde_precision": "bfloat16",
                         "kde_channels_last": True, "kde_batch": 128}, spec).to(device)
    images = ArrayImages(np.random.default_rng(0).integers(0, 256, (600, 1, 32, 32), dtype=np.uint8))

    def prepare(uint8, memory_format=None):
        return to_float(uint8.to(device)).contiguous(memory_format=memory_format or torch.contiguous_format)

    ctx = TrainContext(train_images=images, device=device, prepare=prepare, encode_images=None)
    sgd = model.on_epoch_start(ctx, np.arange(600))
    model.refresh_kde_codes(ctx)  # re-encoded under bfloat16 autocast
    assert model.kde_codes.dtype == torch.float32 and model.kde_codes.device.type == device.type
    x = prepare(images.images(sgd))
    model.train()
    z = model.encoder(x).detach()
    exact = model.kl(z, model.kde_codes)  # outside autocast
    with torch.autocast(device.type, dtype=torch.bfloat16):
        assert model.decoder(z).dtype == torch.bfloat16  # autocast is on for the networks
        under = model.kl(z, model.kde_codes)
        losses = model.training_loss(x)
        val = model.validation_loss(x)
    for name, value in [*losses.items(), *val.items()]:
        if name != "z":
            assert value.dtype == torch.float32, name
    torch.testing.assert_close(under, exact)  # the KDE's distances are not computed in bfloat16
    losses["loss"].backward()
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())


# --- `avae evaluate` of a GPU-trained run -----------------------------------------------------------
# Two trainings of one tiny run, on the CPU and on the GPU (float32; cuDNN's TF32 convolutions and
# Adam's sign-like first steps make them differ slightly), scored by `avae evaluate`:
TOLERANCES = {"frechet_distance": 0.05, "mse_per_pixel": 0.02, "gaussian_kl_to_prior": 0.05}  # relative
ENTROPY_TOLERANCE = 0.05  # nats, absolute
CODES_TOLERANCE = 5e-3  # ‖codes on the GPU − codes on the CPU‖ / ‖codes on the CPU‖, one checkpoint


@needs_gpu
def test_evaluate_of_a_gpu_trained_run_gives_the_cpu_numbers(mnist_root, tmp_path):
    pinned = ["train.epochs=1", "train.precision=float32", "model.kde_precision=float32", "train.channels_last=true",
              "model.kde_channels_last=true", "model.kde_batch=256"]
    results = {}
    for name, device in (("cpu", "cpu"), ("gpu", DEVICE)):
        out = tmp_path / name
        trainer.start(config.resolve(None, [*tiny(mnist_root, *pinned), f"train.device={device}"]), out)
        assert main(["evaluate", str(out), "-n", "100", "--split", "val", "--features", "random",
                     "--disentanglement", "none"]) == 0
        results[name] = json.loads((out / "evaluate.json").read_text())
    cpu, gpu = results["cpu"], results["gpu"]
    for key in ("REC", "INT", "N"):
        assert gpu["sample_quality"][key]["frechet_distance"] == pytest.approx(
            cpu["sample_quality"][key]["frechet_distance"], rel=TOLERANCES["frechet_distance"]), key
    lc, lg = cpu["latent_quality"], gpu["latent_quality"]
    assert lg["reconstruction"]["mse_per_pixel"] == pytest.approx(lc["reconstruction"]["mse_per_pixel"],
                                                                  rel=TOLERANCES["mse_per_pixel"])
    assert lg["gaussian_kl_to_prior"] == pytest.approx(lc["gaussian_kl_to_prior"], rel=TOLERANCES["gaussian_kl_to_prior"])
    assert abs(lg["entropy"]["entropy"] - lc["entropy"]["entropy"]) < ENTROPY_TOLERANCE

    # one checkpoint encoded on either device: the same codes (the GPU run opened on the GPU and on the CPU)
    x = to_float(torch.from_numpy(load_data(config.resolve(None, tiny(mnist_root))).val.images(np.arange(100)).numpy()))
    on_cpu = run.load(tmp_path / "gpu", device="cpu").encode(x)
    on_gpu = run.load(tmp_path / "gpu", device=DEVICE).encode(x.to(DEVICE)).cpu()
    assert float((on_gpu - on_cpu).norm() / on_cpu.norm()) < CODES_TOLERANCE


# --- `auto` against a measurement ------------------------------------------------------------------
MARGIN = 1.15  # what auto picks may be this much slower than the fastest measured (timing noise, a near tie)


def seconds(fn, device, rounds: int) -> float:
    """The median of `rounds` timings of fn, after two untimed calls (kernel choice, caches)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(2):
        fn()
    times = []
    for _ in range(rounds):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@needs_gpu
def test_auto_picks_what_the_measurement_says():
    """The paper's MNIST network (full width, l = 16) at batch 100: the training step and the KDE
    re-encoding in what `auto` chooses are within MARGIN of the fastest of the alternatives."""
    device = torch.device(DEVICE)
    spec = DataSpec((1, 32, 32), "gaussian", (0.0, 1.0), 60000)
    torch.manual_seed(0)
    model = build_model({"name": "avae", "latent_dim": 16, "kde_size": 10000}, spec)
    choices = hardware.fastest(model, device, 100)
    if choices["basis"].startswith("rules"):
        pytest.skip(f"auto decided without a measurement here ({choices['basis']})")
    precisions = ["float32", "bfloat16"] if hardware.native_bf16(device) else ["float32"]
    images = 10000 if device.type == "cuda" else 1024  # the KDE set (fewer on a CPU: the test's own check)
    kde_images = torch.rand(images, 1, 32, 32, generator=torch.Generator().manual_seed(1)).to(device)
    x = torch.rand(100, 1, 32, 32, generator=torch.Generator().manual_seed(2)).to(device)

    train_s = {}
    for precision in precisions:
        for channels_last in (True, False):
            layout = torch.channels_last if channels_last else torch.contiguous_format
            net = copy.deepcopy(model).to(device, memory_format=layout).train()
            net.kde_codes = torch.randn(10000, 16, device=device)
            optimizer = torch.optim.Adam([*net.encoder.parameters(), *net.decoder.parameters()], lr=1e-5)
            xs = x.contiguous(memory_format=layout)

            def step():
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
                    loss = net.training_loss(xs)["loss"]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

            train_s[precision, channels_last] = seconds(step, device, rounds=15)
    picked = train_s[choices["train_precision"], choices["channels_last"]]
    assert picked <= MARGIN * min(train_s.values()), (choices, train_s)

    encode_s = {}
    calls = sorted({b for b in (64, 256, 1024, 4096, images) if b <= images} | {choices["inference_batch"]})
    for channels_last in (True, False):
        layout = torch.channels_last if channels_last else torch.contiguous_format
        encoder = nets.inference_encoder(model.to(device).encoder).to(memory_format=layout)
        xs = kde_images.contiguous(memory_format=layout)
        for precision in precisions:
            for batch in calls:
                def encode():
                    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                                enabled=precision == "bfloat16"):
                        for i in range(0, len(xs), batch):
                            encoder(xs[i : i + batch])

                encode_s[precision, channels_last, batch] = seconds(encode, device, rounds=5)
    picked = encode_s[choices["inference_precision"], choices["inference_channels_last"], choices["inference_batch"]]
    assert picked <= MARGIN * min(encode_s.values()), (choices, encode_s)


# --- the GPU check script, on the CPU ------------------------------------------------------------
SECTIONS = ["gpu_tests", "mnist", "cifar10", "celeba", "disentangle", "memory", "profile"]


def numbers(tree, path=""):
    """(path, value) of every number in a JSON tree."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from numbers(value, f"{path}.{key}")
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from numbers(value, f"{path}[{i}]")
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield path, tree


def test_gpu_check_dry_run_writes_every_section_with_finite_numbers(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "AVAE_TEST_DEVICE"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--dry-run", "--device", "cpu",
                           "--mnist-data", "synthetic", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["dry_run"] is True and result["device"]["type"] == "cpu"
    assert list(result["sections"]) == SECTIONS
    for name, section in result["sections"].items():
        assert section["status"] == "done", (name, section)
    values = dict(numbers(result))
    assert values and all(math.isfinite(v) for v in values.values()), [p for p, v in values.items() if not math.isfinite(v)]

    tests = result["sections"]["gpu_tests"]
    assert tests["exit_code"] == 0 and tests["failed"] == tests["errors"] == 0 and tests["skipped"] >= 4  # no GPU here: skipped
    for name in ("mnist", "cifar10", "celeba", "disentangle"):
        section = result["sections"][name]
        assert set(section["runs"]) == {f"{m} {p}" for m in ("avae", "vae", "ae") for p in ("float32", "bfloat16")}
        for key, row in section["runs"].items():
            assert row["status"] == "done", (name, key, row)
            assert row["images_per_s"] > 0 and row["epoch_s"] > row["train_epoch_s"] > 0
            assert row["timed_steps"] > 0 and row["epoch_steps"] > row["timed_steps"]
            if key.startswith("avae"):
                assert 0 < row["reencoding_share"] < 1 and row["reencodings_timed"] >= 1
        for precision in ("float32", "bfloat16"):
            assert section["ratios"][precision]["avae_over_vae_epoch"] > 0
        assert section["auto"]["would_choose"]["train_precision"] in ("float32", "bfloat16")
    assert "synthetic" in result["sections"]["mnist"]["data"]
    assert result["sections"]["memory"]["peak_bytes"]["mnist"]["avae float32"] is None  # no GPU memory on a CPU
    profile = result["sections"]["profile"]
    for step in ("step_with_reencoding", "step_without"):
        assert profile[step]["top"] and profile[step]["total_ms"] > 0
