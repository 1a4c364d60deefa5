"""Nothing finished is lost and nothing runs that the user did not ask for: resumes that refuse
instead of starting over, run directories from someone else (code, links, YAML bombs), stale
temporary files, and every wrong argument answered in avae's own words."""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import avae
from avae import atomic, config, run, trainer
from avae.cli import main

SETTINGS = ["data.name=mnist", "model.latent_dim=4", "model.width=0.125", "model.kde_size=100",
            "model.kde_refresh_every=3", "train.batch_size=50", "train.progress=false", "train.figures_every=0",
            "train.precision=float32", "model.kde_precision=float32", "train.channels_last=false", "train.threads=1"]


def settings(root, *extra):
    return [*SETTINGS, f"data.root={root}", *extra]


@pytest.fixture(scope="module")
def finished(mnist_root, tmp_path_factory):
    return trainer.start(config.resolve(None, settings(mnist_root, "train.epochs=1")), tmp_path_factory.mktemp("runs") / "r")


@pytest.fixture
def copy(finished, tmp_path):
    """A private copy of the finished run (as if received from someone else)."""
    return shutil.copytree(finished, tmp_path / "received")


def error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("avae: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# --- resume never starts over what is there ---------------------------------------------------
def test_a_resume_without_any_checkpoint_refuses_and_a_restart_keeps_the_earlier_log(copy, capsys):
    # killed between epoch 1's metrics line and its first checkpoint
    shutil.rmtree(copy / "checkpoints")
    run.write_json(copy / "run.json", {**run.info(copy), "status": "running"})
    log = (copy / "metrics.jsonl").read_text()
    assert main(["train", "--resume", str(copy)]) == 2
    assert "ended before its first checkpoint" in error(capsys)
    assert (copy / "metrics.jsonl").read_text() == log and not (copy / "checkpoints").exists()

    # the user's explicit word: the same --out starts it again, the earlier files kept aside
    assert main(["train", "--config", str(copy / "config.yaml"), "--out", str(copy)]) == 0
    assert (copy / "previous" / "1" / "metrics.jsonl").read_text() == log
    assert [r["epoch"] for r in run.read_metrics(copy)] == [1]
    assert run.status(copy) == "finished"


def test_a_finished_run_without_last_pt_is_not_retrained(copy, capsys):
    (copy / "checkpoints" / "last.pt").unlink()
    best = (copy / "checkpoints" / "best.pt").read_bytes()
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    assert main(["train", "--resume", str(copy)]) == 2
    assert "no checkpoints/last.pt" in error(capsys)
    assert (copy / "checkpoints" / "best.pt").read_bytes() == best
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()} == before
    assert main(["train", "--config", str(copy / "config.yaml"), "--out", str(copy)]) == 2  # nor by --out
    assert "already holds a run (finished; nothing retrains it)" in error(capsys)


# --- a received run never runs code on its own -------------------------------------------------
EVIL = "from pathlib import Path\nPath({marker!r}).write_text('ran')\nfrom torch.nn import Linear as Enc\n"


def test_opening_a_run_that_names_classes_imports_nothing_without_trust(copy, tmp_path, monkeypatch, capsys):
    marker = tmp_path / "imported"
    for folder in (copy, tmp_path):  # beside the run, and in the current folder
        (folder / "evil_mod.py").write_text(EVIL.format(marker=str(marker)))
    monkeypatch.chdir(tmp_path)
    text = (copy / "config.yaml").read_text()
    for name in ("evil_mod:Enc", "this:Enc"):  # `this` prints at import time
        cfg = config.load_yaml(text)
        cfg["model"] |= {"encoder": {"class": name}, "decoder": {"class": name}}
        (copy / "config.yaml").write_text(config.dump(cfg))
        for command in (["sample", str(copy)], ["evaluate", str(copy)], ["export", str(copy)],
                        ["train", "--resume", str(copy)]):
            assert main(command) == 2
            err = error(capsys)
            assert "names its own network classes" in err and "--trust-code" in err
        with pytest.raises(avae.AvaeError, match="trust_code=True"):
            avae.load(copy)
        assert not marker.exists() and "evil_mod" not in sys.modules and "this" not in sys.modules


USER_NETS = '''
import torch
from torch import nn


class Encoder(nn.Linear):
    def __init__(self, shape, out_dim):
        super().__init__(shape[0] * shape[1] * shape[2], out_dim)

    def forward(self, x):
        return super().forward(x.flatten(1))


class Decoder(nn.Linear):
    def __init__(self, shape, latent_dim):
        super().__init__(latent_dim, shape[0] * shape[1] * shape[2])
        self.shape = tuple(shape)

    def forward(self, z):
        return super().forward(z).view(-1, *self.shape)
'''


def test_trusted_classes_are_imported_from_the_folder_recorded_in_training(mnist_root, tmp_path, monkeypatch):
    code = tmp_path / "code"
    code.mkdir()
    (code / "flat_nets.py").write_text(USER_NETS)
    monkeypatch.chdir(code)  # training imports the user's classes from the current folder, as `python -m` does
    path_before = list(sys.path)
    run_dir = trainer.start(config.resolve(None, settings(mnist_root, "train.epochs=1", "model.encoder=flat_nets:Encoder",
                                                       "model.decoder=flat_nets:Decoder")), tmp_path / "run")
    assert sys.path == path_before
    assert run.info(run_dir)["code"] == {"flat_nets": {"file": str(code / "flat_nets.py"), "root": str(code)}}
    sys.modules.pop("flat_nets")
    monkeypatch.chdir(tmp_path)
    model = avae.load(run_dir, trust_code=True)  # found in the recorded folder, not the current one
    assert type(model.encoder).__module__ == "flat_nets" and sys.path == path_before


def test_a_user_network_of_the_wrong_kind_is_named(mnist_root, tmp_path, monkeypatch, capsys):
    (tmp_path / "odd_nets.py").write_text(USER_NETS + '''

class Pair(Encoder):
    def forward(self, x):
        return super().forward(x), None


class Integers(Encoder):
    def forward(self, x):
        return super().forward(x).long()
''')
    monkeypatch.chdir(tmp_path)
    for encoder, message in (("Pair", "returns a tuple; it must return one tensor"), ("Integers", "torch.int64 codes")):
        argv = ["train", *sum((["--set", s] for s in settings(mnist_root, f"model.encoder=odd_nets:{encoder}",
                                                              "model.decoder=odd_nets:Decoder")), []),
                "--out", str(tmp_path / encoder)]
        assert main(argv) == 2
        assert message in error(capsys)
        assert not (tmp_path / encoder).exists()


# --- no write leaves the run directory through a link ------------------------------------------
def test_links_planted_in_a_run_directory_are_refused_and_their_targets_untouched(copy, tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (copy / "samples.npy").symlink_to(victim)
    assert main(["sample", str(copy), "-n", "4"]) == 2
    assert "samples.npy is a symbolic link" in error(capsys)
    (copy / "samples.npy").unlink()

    (copy / ".lock").unlink()
    (copy / ".lock").symlink_to(victim)
    assert main(["train", "--resume", str(copy)]) == 2
    assert ".lock is a symbolic link" in error(capsys)

    outside = tmp_path / "outside"
    outside.mkdir()
    (copy / "evaluation").symlink_to(outside, target_is_directory=True)
    with pytest.raises(avae.AvaeError, match="evaluation is a symbolic link"):
        run.subfolder(copy, "evaluation")
    (copy / "metrics.jsonl").unlink()
    (copy / "metrics.jsonl").symlink_to(victim)
    with pytest.raises(avae.AvaeError, match="metrics.jsonl is a symbolic link"):
        run.append_metrics(copy, {"epoch": 2})
    for name in ("figure.png", "result.json"):
        (outside / name).symlink_to(victim)
        with pytest.raises(avae.AvaeError, match="symbolic link"):
            atomic.save_file(lambda tmp: tmp.write_text("x"), outside / name)
    assert victim.read_text() == "precious" and list(outside.iterdir()) and not list(outside.glob("*.tmp*"))


# --- untrusted files cost bounded time -----------------------------------------------------------
def test_a_yaml_alias_bomb_in_a_received_config_is_refused_at_once(copy, capsys):
    bomb = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(9))
    text = (copy / "config.yaml").read_text().replace("options:\n", "options:\n    " + bomb.replace("\n", "\n    "), 1)
    assert "*i" in text
    (copy / "config.yaml").write_text(text)
    start = time.perf_counter()
    assert main(["sample", str(copy)]) == 2
    assert time.perf_counter() - start < 10
    assert "config.yaml is damaged" in error(capsys)
    recursive = copy / "recursive.yaml"
    recursive.write_text("data: &d {name: mnist, options: {self: *d}}\nmodel: {}\ntrain: {}\n")
    assert main(["train", "--config", str(recursive)]) == 2
    assert "anchors and aliases" in error(capsys)


def test_a_repeated_yaml_key_is_an_error_not_an_override(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 1\n  epochs: 50\n")
    assert main(["train", "--config", str(path)]) == 2
    assert "the key 'epochs' is given twice at line 3" in error(capsys)
    base = tmp_path / "merge.yaml"  # keys merged in by << may still be overridden
    base.write_text("defaults: &d {epochs: 1, lr: 0.1}\ntrain:\n  <<: *d\n  epochs: 2\n")
    assert config.load_yaml(base.read_text())["train"] == {"epochs": 2, "lr": 0.1}


# --- bounds and arguments ----------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["bandwidth", "-l", "100000", "-m", "10"], "≤ 21,201"),
    (["train", "--set", "model.latent_dim=1e300"], "model.latent_dim must be an integer ≥ 1 and ≤ 21,201"),
    (["train", "--set", "model.width=1e3"], "model.width must be a number > 0 and ≤ 16"),
    (["train", "--seed", "18446744073709551616"], "≤ 4,294,967,295"),
    (["train", "--set", "train.threads=1e300"], "train.threads must be"),
    (["train", "--set", "model.bandwidth_seed=1e30"], "model.bandwidth_seed must be"),
    (["train", "--model", "aae", "--set", "model.disc_hidden=[1e12]"], "model.disc_hidden must be"),
    (["train", "--epochs", "2", "--set", "train.epochs=3"], "--epochs and --set train.epochs=... both set"),
    (["train", "--trust-code"], "--trust-code goes with --resume"),
])
def test_out_of_range_settings_are_one_line_errors_before_anything_is_written(argv, message, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "out")] if argv[0] == "train" else argv) == 2
    assert message in error(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("call, message", [
    (lambda: avae.bandwidth(True, 100), "latent_dim must be an integer"),
    (lambda: avae.bandwidth(2.5, 100), "latent_dim must be an integer"),
    (lambda: avae.bandwidth(3, 100, seed=-1), "seed must be an integer ≥ 0"),
    (lambda: avae.bandwidth(20_000, 10_000), "centre coordinates"),
    (lambda: avae.AggregateKL(2.5, 50), "latent_dim must be an integer"),
    (lambda: avae.AggregateKL("2", 50), "latent_dim must be an integer"),
    (lambda: avae.AggregateKL(2, 50)(np.zeros((3, 2)), torch.zeros(50, 2)), "floating-point torch.Tensor, got ndarray"),
    (lambda: avae.AggregateKL(2, 50)(torch.zeros(0, 2), torch.randn(50, 2)), "empty batch"),
    (lambda: avae.AggregateKL(2, 50)(torch.full((3, 2), float("nan")), torch.randn(50, 2)), "NaN or infinite"),
    (lambda: avae.AggregateKL(2, 50)(torch.zeros(3, 2), torch.full((50, 2), float("inf"))), "NaN or infinite"),
    (lambda: avae.AggregateKL(2, 50).sample_latent(-1), "n must be an integer ≥ 0"),
])
def test_wrong_arguments_to_the_python_api_are_avae_errors(call, message):
    with pytest.raises(avae.AvaeError, match=message):
        call()


def test_load_sample_and_train_check_their_arguments(finished, mnist_root, tmp_path):
    if not torch.cuda.is_available():
        with pytest.raises(avae.AvaeError, match="not on this machine"):
            avae.load(finished, device="cuda")
    with pytest.raises(avae.AvaeError, match="n must be an integer ≥ 0"):
        avae.load(finished).sample(-1)
    cfg = config.resolve(None, settings(mnist_root, "train.epochs=1"))
    with pytest.raises(avae.AvaeError, match="callbacks must be avae.Callback instances, got object"):
        avae.train(cfg, out=tmp_path / "cb", callbacks=[object()])
    assert not (tmp_path / "cb").exists()


# --- stale temporary files and the progress bar -----------------------------------------------
def test_temporary_files_of_killed_writers_are_removed(copy):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = [copy / "checkpoints" / f"last.{dead}-0123abcd.tmp.pt", copy / f"evaluate.{dead}-0123abcd.tmp.json"]
    mine = copy / f"run.{os.getpid()}-89abcdef.tmp.json"  # a live writer's file stays
    for path in [*stale, mine]:
        path.write_text("torn")
    with run.lock(copy):
        pass
    assert not any(p.exists() for p in stale) and mine.exists()


def test_a_diverging_run_ends_its_progress_bar_before_the_error(mnist_root, tmp_path, capsys):
    argv = ["train", *sum((["--set", s] for s in settings(mnist_root, "train.epochs=1", "train.progress=true",
                                                          "train.lr=1e30")), []), "--out", str(tmp_path / "d")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    last = err.replace("\r", "\n").splitlines()[-1]
    assert last.startswith("avae: error: training diverged"), err[-300:]
    assert json.loads((tmp_path / "d" / "run.json").read_text())["status"] == "failed"


# --- interrupted work -----------------------------------------------------------------------------
def test_ctrl_c_names_the_run_to_resume_and_the_resume_says_where_it_starts(mnist_root, tmp_path, monkeypatch, capsys):
    from avae import callbacks

    def interrupt(self, info, end):
        raise KeyboardInterrupt

    def interrupt_in_epoch_2(self, info, end):
        if end.epoch == 2:
            raise KeyboardInterrupt
        run.append_metrics(info.run_dir, end.record)

    monkeypatch.setattr(callbacks.MetricsLog, "on_epoch_end", interrupt)  # Ctrl-C at the end of epoch 1
    out = tmp_path / "r"
    assert main(["train", *sum((["--set", s] for s in settings(mnist_root, "train.epochs=2")), []),
                 "--out", str(out)]) == 130
    # before the first checkpoint: the advice is to start again (a resume would refuse)
    assert capsys.readouterr().err.splitlines()[-1] == f"avae train --config {out / 'config.yaml'} --out {out}"
    assert run.status(out) == "interrupted" and not (out / "checkpoints").exists()
    monkeypatch.undo()
    killed = tmp_path / "k"  # after a checkpoint: the advice is to resume, which says where it starts
    monkeypatch.setattr(callbacks.MetricsLog, "on_epoch_end", interrupt_in_epoch_2)
    assert main(["train", *sum((["--set", s] for s in settings(mnist_root, "train.epochs=2")), []),
                 "--out", str(killed)]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == f"avae train --resume {killed}"
    monkeypatch.undo()
    cfg = config.load_yaml((killed / "config.yaml").read_text())
    cfg["train"]["progress"] = True
    (killed / "config.yaml").write_text(config.dump(cfg))
    assert main(["train", "--resume", str(killed)]) == 0
    assert f"resuming {killed} at epoch 2, step 0 (of 2 epochs)" in capsys.readouterr().out


def test_evaluating_an_unfinished_run_says_so(copy, capsys):
    run.write_json(copy / "run.json", {**run.info(copy), "status": "interrupted"})
    result = avae.evaluate(copy, n=20, disentanglement="none", classifier_images=100, classifier_epochs=1)
    assert result["trained"] == {"status": "interrupted", "epochs_done": 1, "epochs": 1}
    out, err = capsys.readouterr()
    assert "has not finished training (interrupted, 1 of 1 epochs in checkpoints/last.pt)" in err
    # a header says what will be computed; each step is named while it runs, its seconds after
    assert out.startswith(f"avae evaluate {copy} (last checkpoint): 20 test images; sample quality")
    assert re.search(r"^  encode \.\.\. \d+\.\d s$", out, re.M) and "  feature_classifier ...\n" in out
