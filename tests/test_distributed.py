"""torchrun with 2 CPU processes (gloo): same KDE codes on every rank, the same training as one
process with the same global batch, a 2-rank checkpoint that resumes on 1 rank, and a 2-rank run
killed mid-epoch that resumes bitwise."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from avae import config, run, trainer
from avae.cli import main
from avae.data import load_data
from avae.models import seeded_model

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")


def settings(root, *extra):
    # the paper's MNIST network (with batch norm) at 1/8 width
    return ["data.name=mnist", f"data.root={root}", "model.latent_dim=4", "model.width=0.125", "model.kde_size=101",
            "model.kde_refresh_every=3", "train.batch_size=50", "train.progress=false", "train.figures_every=0", *extra]


def torchrun(*args, check=True, **options):
    """`options` go to subprocess.run (cwd, env); check=False returns a failed run's process too."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **options)
    assert proc.returncode == 0 or not check, proc.stderr[-3000:]
    return proc


def test_kde_codes_are_identical_on_both_ranks_and_match_one_process(mnist_root, tmp_path):
    torchrun(str(Path(__file__).parent / "kde_ranks.py"), str(tmp_path), *settings(mnist_root))
    rank0 = torch.load(tmp_path / "kde_codes_rank0_of2.pt")
    rank1 = torch.load(tmp_path / "kde_codes_rank1_of2.pt")
    assert rank0.shape == (101, 4)  # m = 101 does not split evenly over two ranks
    assert torch.equal(rank0, rank1)
    cfg = config.resolve(None, settings(mnist_root))
    data = load_data(cfg)
    model = seeded_model(cfg, data)
    loop = trainer.Trainer(cfg, tmp_path, data, model)
    model.on_epoch_start(loop.context, np.random.default_rng([0, 0]).permutation(len(data.train)))
    model.refresh_kde_codes(loop.context)
    torch.testing.assert_close(rank0, model.kde_codes, rtol=1e-2, atol=1e-2)  # bfloat16 encoding, batch layout


def weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def dsprites(*extra):
    # the disentanglement network has no batch norm, so 2 CPU ranks compute exactly what one process does
    return ["data.name=dsprites", "data.train_size=500", "data.val_size=100", "model.width=0.125", "model.kde_size=100",
            "model.kde_refresh_every=3", "model.kde_precision=float32", "train.batch_size=50", "train.progress=false",
            "train.figures_every=0", "train.precision=float32", "train.channels_last=true", "train.threads=1", *extra]


def test_two_ranks_train_like_one_process_and_resume_on_one(tmp_path):
    two = tmp_path / "two"
    torchrun("-m", "avae", "train", "--out", str(two), *sum((["--set", s] for s in dsprites("train.epochs=1")), []))
    one = trainer.start(config.resolve(None, dsprites("train.epochs=1")), tmp_path / "one")
    m1, m2 = metrics(one)[0], metrics(two)[0]
    assert m2["ranks"] == 2 and m1["ranks"] == 1 and m1["steps"] == m2["steps"]
    assert m2["train_loss"] == pytest.approx(m1["train_loss"], rel=1e-4)
    assert m2["val_recon"] == pytest.approx(m1["val_recon"], rel=1e-4)
    a, b = weights(one), weights(two)
    for key in a:
        torch.testing.assert_close(b[key].double(), a[key].double(), rtol=1e-3, atol=1e-4, msg=key)
    assert not list((two / "checkpoints").glob("*.tmp*"))

    # the 2-rank checkpoint continues on one rank, like a one-process run of two epochs
    cfg_path = two / "config.yaml"
    cfg_path.write_text(cfg_path.read_text().replace("epochs: 1", "epochs: 2"))
    assert main(["train", "--resume", str(two)]) == 0
    whole = trainer.start(config.resolve(None, dsprites("train.epochs=2")), tmp_path / "whole")
    assert [m["ranks"] for m in metrics(two)] == [2, 1]
    assert metrics(two)[1]["val_recon"] == pytest.approx(metrics(whole)[1]["val_recon"], rel=1e-3)


NAN_ON_RANK_1 = '''
import os
import torch
from torch import nn


class Encoder(nn.Module):
    """A linear encoder whose third training call returns NaN on rank 1 only."""

    def __init__(self, shape, out_dim):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(shape[0] * shape[1] * shape[2], out_dim))
        self.calls = 0

    def forward(self, x):
        z = self.net(x)
        if self.training:
            self.calls += 1
            if os.environ.get("RANK") == "1" and self.calls == 3:
                z = z * float("nan")
        return z


class Decoder(nn.Module):
    def __init__(self, shape, latent_dim):
        super().__init__()
        self.shape = tuple(shape)
        self.net = nn.Linear(latent_dim, shape[0] * shape[1] * shape[2])

    def forward(self, z):
        return self.net(z).view(-1, *self.shape)
'''


def test_a_non_finite_loss_on_one_rank_stops_every_rank(tmp_path):
    """Without agreement the finite rank would wait in the gradient all-reduce for ever."""
    (tmp_path / "nan_nets.py").write_text(NAN_ON_RANK_1)
    out = tmp_path / "run"
    args = [s for s in dsprites("train.epochs=1", "model.name=ae", "model.encoder=nan_nets:Encoder",
                                "model.decoder=nan_nets:Decoder") if not s.startswith("model.kde")]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "avae",
           "train", "--out", str(out), *sum((["--set", s] for s in args), [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])})
    assert proc.returncode != 0
    assert "step 3: the training loss is nan" in proc.stderr, proc.stderr[-3000:]
    assert "step 3: the training loss is non-finite on another rank" in proc.stderr
    assert run.status(out) == "failed"


KILL_RANK_0 = '''

import signal


class KillingEncoder(nn.Module):
    """A linear encoder that kills rank 0 (SIGKILL: nothing is cleaned up) at its AVAE_KILL_AT-th training call."""

    def __init__(self, shape, out_dim):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(shape[0] * shape[1] * shape[2], out_dim))
        self.calls, self.original = 0, id(self)  # copies (auto's timing probes, the KDE's encoder) do not count

    def forward(self, x):
        if self.training and id(self) == self.original:
            self.calls += 1
            if os.environ.get("RANK") == "0" and str(self.calls) == os.environ.get("AVAE_KILL_AT"):
                os.kill(os.getpid(), signal.SIGKILL)
        return self.net(x)
'''


def assert_identical(a, b, where="checkpoint"):
    if isinstance(a, torch.Tensor):
        same = a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        assert same, f"{where} differs" + (f" by up to {(a.double() - b.double()).abs().max():.3g}"
                                           if a.is_floating_point() and a.shape == b.shape else "")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("model", ["vae", "avae", "aae"])
def test_a_run_killed_mid_epoch_resumes_bitwise_on_two_ranks(tmp_path, model):
    """Every rank's noise (VAE samples, the AAE's prior draws) follows from its position in the run,
    so a resumed run draws what the uninterrupted one drew."""
    (tmp_path / "kill_nets.py").write_text(NAN_ON_RANK_1 + KILL_RANK_0)
    args = dsprites("train.epochs=1", f"model.name={model}", "model.latent_dim=4", "model.encoder=kill_nets:KillingEncoder",
                    "model.decoder=kill_nets:Decoder", "train.checkpoint_minutes=0",
                    "model.kde_batch=100", "model.kde_channels_last=true")  # nothing left to timing
    if model != "avae":
        args = [s for s in args if not s.startswith("model.kde")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    sets = sum((["--set", s] for s in args), [])
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    torchrun("-m", "avae", "train", "--out", str(whole), *sets, cwd=tmp_path, env=env)
    proc = torchrun("-m", "avae", "train", "--out", str(killed), *sets, check=False, cwd=tmp_path,
                    env={**env, "AVAE_KILL_AT": "5"})  # rank 0 dies in the 5th step, after a checkpoint
    assert proc.returncode != 0 and run.status(killed) != "finished", proc.stderr[-3000:]
    state = torch.load(killed / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 0 and 0 < state["step"] < 5  # mid-epoch (the AVAE's at a KDE refresh)
    torchrun("-m", "avae", "train", "--resume", str(killed), "--trust-code", cwd=tmp_path, env=env)
    assert run.status(killed) == "finished"
    a, b = (torch.load(d / "checkpoints" / "last.pt", weights_only=True) for d in (whole, killed))
    for key in ("model", "optimizer", "model_extra", "scheduler", "torch_rng", "epoch", "step"):
        assert_identical(a[key], b[key], key)
