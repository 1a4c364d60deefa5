"""`auto` settings resolved for the machine at hand, and the inference encoder of the KDE refresh."""
import dataclasses
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch import nn

from avae import config, hardware, machine_load, nets, run, trainer
from avae.errors import AvaeError
from avae.data import load_data
from avae.models import seeded_model


def tiny(root, *extra):
    return ["data.name=mnist", f"data.root={root}", "model.latent_dim=4", "model.width=0.125", "model.kde_size=100",
            "model.kde_refresh_every=3", "train.batch_size=50", "train.epochs=1", "train.figures_every=0",
            "train.progress=false", *extra]


def randomise_batch_norm(encoder, seed=0):
    """Running statistics and affine maps far from their initial identity, as after training."""
    g = torch.Generator().manual_seed(seed)
    for m in encoder.modules():
        if isinstance(m, nn.BatchNorm2d):
            for t in (m.running_mean, m.weight.data, m.bias.data):
                t.copy_(torch.randn(t.shape, generator=g))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


@pytest.mark.parametrize("arch,shape", [("mnist", (1, 32, 32)), ("cifar10", (3, 32, 32)), ("disentangle", (1, 64, 64))])
@pytest.mark.parametrize("channels_last", [True, False])
def test_inference_encoder_gives_the_eval_encoders_codes(arch, shape, channels_last):
    torch.manual_seed(0)
    encoder, _ = nets.build(arch, shape, 6, 6, 0.25, (0.0, 1.0))
    layout = torch.channels_last if channels_last else torch.contiguous_format
    encoder.to(memory_format=layout)
    randomise_batch_norm(encoder)
    frozen = nets.inference_encoder(encoder)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    assert encoder.training and not frozen.training  # the training encoder is left as it was
    x = torch.rand(20, *shape, generator=torch.Generator().manual_seed(1)).contiguous(memory_format=layout)
    with torch.no_grad():
        expected = encoder.eval()(x)
        got = frozen(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("calls", [["model.kde_batch=7", "model.kde_channels_last=true"],
                                   ["model.kde_batch=1000", "model.kde_channels_last=false"]])
def test_kde_refresh_follows_the_current_weights(mnist_root, tmp_path, calls):
    cfg = config.resolve(None, tiny(mnist_root, "model.kde_precision=float32", *calls))
    data = load_data(cfg)
    model = seeded_model(cfg, data)
    loop = trainer.Trainer(cfg, tmp_path, data, model)
    model.on_epoch_start(loop.context, np.arange(len(data.train)))

    def eval_codes():
        model.eval()
        with torch.no_grad():
            codes = model.encoder(loop.prepare(model.kde_images))
        model.train()
        return codes

    for seed in (0, 1):  # new weights and statistics between refreshes: the codes follow them
        randomise_batch_norm(model.encoder, seed)
        model.refresh_kde_codes(loop.context)
        assert model.training
        torch.testing.assert_close(model.kde_codes, eval_codes(), rtol=1e-4, atol=1e-5)
    losses = model.training_loss(loop.prepare(data.train.images(np.arange(150, 160))))
    losses["loss"].backward()  # the refreshed codes enter autograd as constants
    assert not model.kde_codes.requires_grad


def test_auto_settings_are_resolved_and_recorded(mnist_root, tmp_path):
    run_dir = trainer.start(config.resolve(None, tiny(mnist_root)), tmp_path / "auto")
    saved = config.load_yaml((run_dir / "config.yaml").read_text())
    assert saved["train"]["precision"] in ("float32", "bfloat16")
    assert saved["train"]["channels_last"] in (True, False)
    assert saved["train"].get("threads") is None  # auto threads follow the load, epoch by epoch
    assert all(r["threads"] >= 1 for r in run.read_metrics(run_dir))
    assert saved["model"]["kde_precision"] in ("float32", "bfloat16")
    assert saved["model"]["kde_channels_last"] in (True, False)
    assert saved["model"]["kde_batch"] in hardware.INFERENCE_BATCHES
    record = json.loads((run_dir / "run.json").read_text())["auto"]
    assert record["chosen"] == {
        "train.precision": saved["train"]["precision"], "train.channels_last": saved["train"]["channels_last"],
        "model.kde_precision": saved["model"]["kde_precision"],
        "model.kde_channels_last": saved["model"]["kde_channels_last"], "model.kde_batch": saved["model"]["kde_batch"],
    }
    assert record["machine"]["capability"] == torch.backends.cpu.get_cpu_capability()
    if not hardware.native_bf16(torch.device("cpu")):  # never the emulated bfloat16
        assert "bfloat16" not in (saved["train"]["precision"], saved["model"]["kde_precision"])
    # the resolved config resumes as it is, with nothing left to choose
    assert trainer.resume(run_dir) == run_dir


def test_explicit_settings_win_over_auto(mnist_root, tmp_path):
    settings = ["train.precision=bfloat16", "train.channels_last=false", "train.threads=1", "model.kde_precision=float32",
                "model.kde_channels_last=true", "model.kde_batch=33"]
    run_dir = trainer.start(config.resolve(None, tiny(mnist_root, *settings)), tmp_path / "explicit")
    saved = config.load_yaml((run_dir / "config.yaml").read_text())
    assert (saved["train"]["precision"], saved["train"]["channels_last"], saved["train"]["threads"]) == ("bfloat16", False, 1)
    assert (saved["model"]["kde_precision"], saved["model"]["kde_channels_last"], saved["model"]["kde_batch"]) == (
        "float32", True, 33)
    assert json.loads((run_dir / "run.json").read_text())["auto"]["chosen"] == {}


def facts(capability, flags):
    return {"capability": capability, "native_bf16_flags": flags}


def test_bfloat16_counts_as_native_only_where_the_kernels_may_use_it(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert hardware.native_bf16(cpu, facts("AVX512", ["avx512_bf16"]))
    assert not hardware.native_bf16(cpu, facts("AVX512", []))  # AVX-512 without bfloat16
    assert not hardware.native_bf16(cpu, facts("AVX2", ["avx512_bf16"]))  # ATEN_CPU_CAPABILITY=avx2
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not hardware.native_bf16(cpu, facts("AVX512", ["avx512_bf16"]))
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx512_core_amx")
    assert hardware.native_bf16(cpu, facts("AVX512", ["avx512_bf16", "amx_bf16"]))


def test_choices_are_measured_once_and_cached(mnist_root, monkeypatch, tmp_path):
    monkeypatch.setenv("AVAE_CACHE_DIR", str(tmp_path / "cache"))
    cfg = config.resolve(None, tiny(mnist_root))
    model = seeded_model(cfg, load_data(cfg))
    monkeypatch.setattr(hardware, "busy_cores", lambda: 0.0)
    first = hardware.fastest(model, torch.device("cpu"), 50)
    assert first["train_precision"] in ("float32", "bfloat16") and first["inference_batch"] in hardware.INFERENCE_BATCHES
    # every candidate's time is kept: the training step at the run's batch size, the inference
    # encoder at its chosen precision and layout in calls of each candidate size
    precisions = 2 if hardware.native_bf16(torch.device("cpu")) else 1
    assert len(first["seconds"]) == 4 * precisions + len(hardware.INFERENCE_BATCHES)
    assert all(t > 0 for t in first["seconds"].values())
    assert "train float32 contiguous batch 50" in first["seconds"]
    layout = "channels_last" if first["inference_channels_last"] else "contiguous"
    assert f"inference {first['inference_precision']} {layout} 1024 images in calls of 64" in first["seconds"]
    monkeypatch.setattr(hardware, "_measure", lambda *a: pytest.fail("measured again"))
    assert hardware.fastest(model, torch.device("cpu"), 50) == first
    with pytest.raises(pytest.fail.Exception, match="measured again"):  # another batch size is measured anew
        hardware.fastest(model, torch.device("cpu"), 30)


def test_a_busy_machine_takes_the_rules_and_every_later_run_the_same_choice(mnist_root, monkeypatch, tmp_path):
    monkeypatch.setenv("AVAE_CACHE_DIR", str(tmp_path / "cache"))
    cfg = config.resolve(None, tiny(mnist_root))
    model = seeded_model(cfg, load_data(cfg))
    monkeypatch.setattr(hardware, "busy_cores", lambda: 100.0)
    monkeypatch.setattr(hardware, "_measure", lambda *a: pytest.fail("timings taken on a busy machine"))
    busy = hardware.fastest(model, torch.device("cpu"), 50)
    native = hardware.native_bf16(torch.device("cpu"))
    assert busy == hardware.rules(["float32", "bfloat16"] if native else ["float32"], busy["basis"])
    assert "other work kept 100.0 of" in busy["basis"] and busy["train_precision"] == "float32"
    monkeypatch.setattr(hardware, "busy_cores", lambda: 0.0)
    assert hardware.fastest(model, torch.device("cpu"), 50) == busy  # quiet now, but one comparison keeps one choice
    # the VAE's encoder has twice the outputs, and shares the AVAE's choice
    sections = cfg.to_dict()
    vae_cfg = {**sections, "model": dataclasses.asdict(cfg.model) | {"name": "vae"}}  # the common settings alone
    vae = seeded_model(config.resolve(vae_cfg), load_data(cfg))
    assert hardware.fastest(vae, torch.device("cpu"), 50) == busy


def test_threads_take_the_cores_that_other_work_leaves_free(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(hardware, "available_cores", lambda: 4)
    for busy, expected in [(0.0, 4), (1.2, 3), (2.6, 1), (16.0, 1), (0.4, 4)]:
        monkeypatch.setattr(hardware, "busy_cores", lambda: busy)
        assert hardware.threads() == expected, busy
    monkeypatch.setattr(hardware, "busy_cores", lambda: 0.0)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two ranks on the machine share its cores
    assert hardware.threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # torchrun's word wins
    assert hardware.threads() == torch.get_num_threads()


def test_more_threads_than_free_cores_is_named_in_one_line(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(hardware, "available_cores", lambda: 4)
    monkeypatch.setattr(hardware, "busy_cores", lambda: 2.6)
    warning = hardware.threads_warning(3)
    assert warning == ("train.threads=3 is more than the 1 core(s) free for this process (of 4; other work keeps 2.6 "
                       "busy): every operation waits for its slowest thread, so train.threads=1 (what auto takes now) "
                       "is likely faster")
    assert hardware.threads_warning(1) is None
    monkeypatch.setattr(hardware, "busy_cores", lambda: 0.0)
    assert hardware.threads_warning(4) is None
    assert "train.threads=4 (what auto takes now)" in hardware.threads_warning(8)  # more than the machine has


def test_training_warns_when_train_threads_exceeds_the_free_cores(mnist_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(hardware, "busy_cores", lambda: float(hardware.available_cores()))
    settings = tiny(mnist_root, "train.threads=2", "train.precision=float32", "train.channels_last=false")
    trainer.start(config.resolve(None, settings), tmp_path / "busy")
    assert capsys.readouterr().err.count("warning: train.threads=2 is more than the 1 core(s) free") == 1
    trainer.start(config.resolve(None, tiny(mnist_root, "train.precision=float32", "train.channels_last=false")),
                  tmp_path / "auto")
    assert "warning" not in capsys.readouterr().err  # auto takes what is free


def test_busy_cores_counts_the_work_of_other_processes():
    if machine_load._busy_seconds() is None:
        pytest.skip("no /proc/stat")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        assert hardware.busy_cores(0.5) > 0.5  # one process spinning beside us
    finally:
        spinner.kill()
        spinner.wait()


def test_a_cgroup_cpu_quota_limits_the_cores(monkeypatch):
    files = {"/sys/fs/cgroup/cpu.max": "150000 100000\n"}
    monkeypatch.setattr(machine_load, "_read", lambda path: files.get(str(path)))
    assert machine_load.cgroup_cpu_quota() == 1.5 and machine_load.available_cores() == min(2, len(os.sched_getaffinity(0)))
    files["/sys/fs/cgroup/cpu.max"] = "max 100000\n"
    assert machine_load.cgroup_cpu_quota() is None
    files.clear()
    files |= {"/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "50000\n", "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"}
    assert machine_load.cgroup_cpu_quota() == 0.5 and machine_load.available_cores() == 1
    files["/sys/fs/cgroup/cpu/cpu.cfs_quota_us"] = "-1\n"
    assert machine_load.cgroup_cpu_quota() is None


@pytest.mark.parametrize("setting", ["train.precision=half", "train.channels_last=maybe", "train.threads=0",
                                     "model.kde_precision=float16", "model.kde_batch=0",
                                     "model.kde_channels_last=maybe"])
def test_bad_hardware_settings_are_rejected(mnist_root, tmp_path, setting):
    with pytest.raises(AvaeError):
        trainer.start(config.resolve(None, tiny(mnist_root, setting)), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("busy, given, expected", [(1.6, None, "PASSIVE"), (0.2, None, None), (1.6, "ACTIVE", "ACTIVE")])
def test_openmp_waits_passively_only_beside_other_work_and_never_over_the_users_setting(busy, given, expected):
    """Decided in a fresh interpreter (before torch starts OpenMP), with the machine's load made up."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | ({"OMP_WAIT_POLICY": given} if given else {})
    code = (f"from avae import machine_load as m; m.busy_cores = lambda: {busy}; m.available_cores = lambda: 2; "
            "m.openmp_waits_passively(); import os, torch; print(os.environ.get('OMP_WAIT_POLICY'))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == str(expected)


def test_openmp_wait_policy_is_left_alone_once_torch_is_imported(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(machine_load, "busy_cores", lambda: 100.0)
    assert not machine_load.openmp_waits_passively() and "OMP_WAIT_POLICY" not in os.environ
