"""The public Python API: avae.train/evaluate/load, user networks, callbacks, export, compare."""
import dataclasses
import json
import re
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import avae
from avae import config, run
from avae.cli import main


def tiny_config(root, **train):
    return {"data": {"name": "mnist", "root": str(root)},
            "model": {"name": "avae", "latent_dim": 4, "width": 0.125, "kde_size": 100},
            "train": {"batch_size": 50, "epochs": 1, "progress": False, **train}}


@pytest.fixture(scope="module")
def run_dir(mnist_root, tmp_path_factory):
    return avae.train(tiny_config(mnist_root, figures_every=0), out=tmp_path_factory.mktemp("runs") / "r")


def test_import_is_lazy_and_the_api_is_explicit():
    code = "import avae, sys; print(sorted(m for m in ('torch', 'numpy') if m in sys.modules)); print(dir(avae))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "[]"
    assert set(eval(out[1])) == {"AggregateKL", "AvaeError", "Callback", "EpochEnd", "RunInfo", "__version__",
                                 "bandwidth", "compare", "evaluate", "export", "load", "resume", "sample",
                                 "sigma_from_validation", "train", "latent_fit", "LatentFit"}
    with pytest.raises(AttributeError):
        avae.nonsense


def test_each_command_is_a_plain_function_that_importing_the_modules_does_not_replace():
    import types

    import avae.comparison  # noqa: F401  (modules of other names: importing them rebinds no verb)
    import avae.evaluation  # noqa: F401
    import avae.exporter  # noqa: F401
    import avae.kde_bandwidth  # noqa: F401
    import avae.trainer  # noqa: F401

    for verb in ("train", "resume", "evaluate", "sample", "export", "compare", "load", "bandwidth"):
        assert isinstance(getattr(avae, verb), types.FunctionType), verb


def test_sample_resume_and_compare_from_python_do_what_their_commands_do(run_dir, tmp_path, capsys):
    images = avae.sample(run_dir, 5, seed=3)
    assert main(["sample", str(run_dir), "-n", "5", "--seed", "3", "--out", str(tmp_path / "s")]) == 0
    assert images.dtype == np.uint8 and np.array_equal(images, np.load(tmp_path / "s" / "samples.npy"))
    assert not np.array_equal(images, avae.sample(run_dir, 5, seed=4))
    with pytest.raises(avae.AvaeError, match="n must be an integer ≥ 1"):
        avae.sample(run_dir, 0)
    metrics, weights = run.read_metrics(run_dir), (run_dir / "checkpoints" / "last.pt").read_bytes()
    assert avae.resume(run_dir) == run_dir  # a finished run: nothing left to train, nothing changed
    assert run.read_metrics(run_dir) == metrics and (run_dir / "checkpoints" / "last.pt").read_bytes() == weights


def test_train_from_python_returns_a_finished_run_directory(run_dir):
    assert run.status(run_dir) == "finished"
    cfg, spec = run.read(run_dir)
    assert cfg.params.kde_size == 100 and spec.shape == (1, 32, 32)
    assert [r["epoch"] for r in run.read_metrics(run_dir)] == [1]


def test_load_gives_an_eval_model_on_float_images_and_leaves_the_global_rng(run_dir):
    state = torch.get_rng_state()
    model = avae.load(run_dir)
    assert torch.equal(torch.get_rng_state(), state)  # loading never reseeds torch's global generator
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    x = torch.rand(5, 1, 32, 32)
    z = model.encode(x)
    assert z.shape == (5, 4)
    images = model.decode(z)
    assert images.shape == (5, 1, 32, 32) and 0 <= images.min() and images.max() <= 1
    torch.testing.assert_close(model.reconstruct(x), images)
    a = model.sample(6, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, model.sample(6, torch.Generator().manual_seed(3)))
    assert a.shape == (6, 1, 32, 32) and model.sample(2).shape == (2, 1, 32, 32)
    best = avae.load(run_dir, checkpoint="best", device="cpu")
    assert best.device == torch.device("cpu")
    with pytest.raises(avae.AvaeError, match="last' or 'best"):
        avae.load(run_dir, checkpoint="first")
    with pytest.raises(avae.AvaeError, match="not a device"):
        avae.load(run_dir, device="toaster")


def test_evaluate_from_python_returns_the_results_it_writes(run_dir):
    result = avae.evaluate(run_dir, n=60, seed=1, classifier_images=500, classifier_epochs=1, progress=False)
    assert result == json.loads((run_dir / "evaluate.json").read_text())
    assert result["model"] == "avae" and set(result["sample_quality"]) == {"REC", "INT", "N"}


def test_compare_shows_results_side_by_side_with_the_settings_that_differ(run_dir, tmp_path, capsys):
    if not (run_dir / "evaluate.json").is_file():
        avae.evaluate(run_dir, n=60, seed=1, classifier_images=500, classifier_epochs=1, progress=False)
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    cfg, _ = run.read(other)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=7),
                              params=dataclasses.replace(cfg.params, density_floor_quantile=0.9999999))
    (other / "config.yaml").write_text(config.dump(cfg))
    result = json.loads((other / "evaluate.json").read_text())
    result["sample_quality"]["N"]["frechet_distance"] = 0.5 * result["sample_quality"]["N"]["frechet_distance"]
    (other / "evaluate.json").write_text(json.dumps(result))

    page = tmp_path / "cmp" / "comparison.html"
    assert main(["compare", str(run_dir), str(other), "--out", str(page.parent)]) == 0
    out = capsys.readouterr().out
    lines = {cells[0]: cells[1:] for cells in (re.split(r"  +", line.strip()) for line in out.splitlines())}
    assert lines["Fréchet distance, N ↓"] == [f"{2 * result['sample_quality']['N']['frechet_distance']:.4g}",
                                              f"{result['sample_quality']['N']['frechet_distance']:.4g} *"]  # best
    reference = lines["entropy of whitened N(0, I) codes (l/2)"]
    assert reference == [reference[0]] * 2  # a reference: no arrow, the same, never ranked
    assert lines["reconstruction MSE per pixel ↓"][-1].endswith(" =")  # equal numbers tie
    assert lines["model"] == ["avae", "avae"] and lines["epochs"] == ["1", "1"]  # what heads each column
    assert out.startswith("evaluated alike: dataset mnist, feature space")
    target = "N(0, (1−h²)I) with the bias-corrected bandwidth h"
    assert f"scored against each run's sampler: {run_dir.name}: {target}; other: {target}\n" in out
    assert lines["train.seed"] == ["0", "7"] and "model.kde_size" not in lines  # only what differs
    from_python = avae.compare([run_dir, other], out=tmp_path / "py")  # what the command printed and wrote
    assert from_python["metrics"]["fd_N"] == [2 * result["sample_quality"]["N"]["frechet_distance"],
                                              result["sample_quality"]["N"]["frechet_distance"]]
    assert (tmp_path / "py" / "comparison.html").read_text() == page.read_text()
    assert lines["model.density_floor_quantile"] == ["0.999999", "0.9999999"]  # settings exactly as configured
    html = page.read_text()
    assert f"<b>{result['sample_quality']['N']['frechet_distance']:.4g}</b>" in html  # the lower FD is the better
    assert html.count('alt="samples of ') == 2 and "<td>latent fit against</td>" in html  # a grid under each run

    result["n"] = 10  # numbers of another evaluation are not ranked against these
    (other / "evaluate.json").write_text(json.dumps(result))
    assert main(["compare", str(run_dir), str(other)]) == 2
    assert "not comparable (n: 60, 10)" in capsys.readouterr().err
    assert main(["compare", str(run_dir)]) == 2
    os.remove(other / "evaluate.json")
    assert main(["compare", str(run_dir), str(other)]) == 2
    assert "avae evaluate" in capsys.readouterr().err


EXPORTED = """
import sys, torch
folder, out = sys.argv[1], sys.argv[2]
encoder = torch.export.load(folder + "/encoder.pt2").module()
decoder = torch.export.load(folder + "/decoder.pt2").module()
sampler = torch.load(folder + "/sampler.pt", weights_only=True)
x = torch.load(folder + "/x.pt")
eps = torch.randn(5, sampler["mean"].numel(), generator=torch.Generator().manual_seed(11), dtype=sampler["mean"].dtype)
latent = (sampler["mean"] + eps @ sampler["scale_tril"].T).float()
torch.save({"codes": encoder(x), "images": decoder(encoder(x)), "one": encoder(x[:1]), "latent": latent,
            "samples": decoder(latent), "weights": torch.load(folder + "/weights.pt", weights_only=True)}, out)
assert not any(name == "avae" or name.startswith("avae.") for name in sys.modules)
"""


def test_export_loads_with_torch_alone_and_matches_the_model(run_dir, tmp_path):
    assert main(["export", str(run_dir), "--out", str(tmp_path / "exp")]) == 0
    folder = tmp_path / "exp"
    assert {p.name for p in folder.iterdir()} == {"weights.pt", "config.yaml", "data_spec.json", "encoder.pt2",
                                                  "decoder.pt2", "sampler.pt"}
    assert json.loads((folder / "data_spec.json").read_text())["shape"] == [1, 32, 32]
    x = torch.rand(4, 1, 32, 32)
    torch.save(x, folder / "x.pt")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", EXPORTED, str(folder), str(tmp_path / "out.pt")], env=env, cwd=tmp_path,
                   check=True)
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    model = avae.load(run_dir)
    torch.testing.assert_close(got["codes"], model.encode(x))
    torch.testing.assert_close(got["images"], model.decode(model.encode(x)))
    torch.testing.assert_close(got["one"], model.encode(x[:1]))  # any batch size
    torch.testing.assert_close(got["latent"], model.sample_latent(5, torch.Generator().manual_seed(11)))
    torch.testing.assert_close(got["samples"], model.sample(5, torch.Generator().manual_seed(11)))
    assert got["weights"].keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(got["weights"][key], value), key


class DataDependent(torch.nn.Module):
    def encode(self, x):
        return x if x.sum() > 0 else -x  # a branch on the values: torch.export cannot capture it


def test_export_names_what_torch_export_refused():
    from avae.errors import AvaeError
    from avae.exporter import exported

    with pytest.raises(AvaeError, match="torch.export could not export the model's encode: .*avae.load"):
        exported(DataDependent(), "encode", torch.ones(2, 3))


USER_NETS = '''
import torch
from torch import nn


class Encoder(nn.Module):
    def __init__(self, shape, out_dim, hidden=32):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(shape[0] * shape[1] * shape[2], hidden), nn.ReLU(),
                                 nn.Linear(hidden, out_dim))

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, shape, latent_dim, hidden=32):
        super().__init__()
        self.shape = tuple(shape)
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, self.shape[0] * self.shape[1] * self.shape[2]))

    def forward(self, z):
        return self.net(z).view(len(z), *self.shape)


class Wrong(Decoder):
    def forward(self, z):
        return self.net(z)
'''


@pytest.fixture
def user_nets(tmp_path, monkeypatch):
    (tmp_path / "my_nets.py").write_text(USER_NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("model", ["avae", "vae"])
def test_own_encoder_and_decoder_classes_train_like_the_built_in_ones(mnist_root, user_nets, model):
    cfg = tiny_config(mnist_root, epochs=2, figures_every=1)
    cfg["model"] |= {"name": model, "encoder": {"class": "my_nets:Encoder", "hidden": 24},
                     "decoder": {"class": "my_nets:Decoder", "hidden": 24}}
    if model != "avae":
        del cfg["model"]["kde_size"]
    run_dir = avae.train(cfg, out=user_nets / "run")
    with pytest.raises(avae.AvaeError, match="names its own network classes .*trust_code=True"):
        avae.load(run_dir)  # opening a run that names classes runs their code: only on the user's word
    loaded = avae.load(run_dir, trust_code=True)
    assert type(loaded.encoder).__name__ == "Encoder" and loaded.encoder.net[1].out_features == 24
    assert loaded.encoder.net[-1].out_features == (4 if model == "avae" else 8)  # mean and log-variance
    metrics = run.read_metrics(run_dir)
    assert [r["epoch"] for r in metrics] == [1, 2] and metrics[-1]["val_recon"] < metrics[0]["val_recon"]
    assert {p.name for p in (run_dir / "figures" / "epoch_002").iterdir()} >= {"samples.png", "latents.png"}
    assert avae.trainer.resume(run_dir, trust_code=True) == run_dir and [r["epoch"] for r in run.read_metrics(run_dir)] == [1, 2]


def test_bad_network_classes_are_one_line_errors(mnist_root, user_nets, capsys):
    base = ["train", "--set", "data.name=mnist", "--set", f"data.root={mnist_root}", "--set", "model.latent_dim=4",
            "--set", "model.kde_size=100", "--set", "train.progress=false", "--out", str(user_nets / "bad")]
    for encoder, decoder, message in [
        ("my_nets:Nothing", "my_nets:Decoder", "cannot be imported"),
        ("no_such_module:Encoder", "my_nets:Decoder", "cannot be imported"),
        ("my_nets:Encoder", "my_nets:Wrong", "model.decoder returns"),
        ("my_nets:Encoder", "torch:Tensor", "not a torch.nn.Module"),
        ("my_nets", "my_nets:Decoder", "module:Class"),
    ]:
        assert main([*base, "--set", f"model.encoder={encoder}", "--set", f"model.decoder={decoder}"]) == 2
        assert message in capsys.readouterr().err
    assert main([*base, "--set", "model.encoder={class: 'my_nets:Encoder', depth: 3}",
                 "--set", "model.decoder=my_nets:Decoder"]) == 2
    assert "does not take" in capsys.readouterr().err
    assert not (user_nets / "bad").exists()  # nothing is created before the inputs have been checked


class Recorder(avae.Callback):
    def __init__(self):
        self.events = []

    def on_train_start(self, info):
        self.events.append(("start", info.run_dir.name, info.settings.epochs))

    def on_epoch_start(self, info, epoch, steps, start):
        self.events.append(("epoch", epoch, steps, start))

    def on_step_end(self, info, step, losses):
        assert "z" not in losses and "loss" in losses
        assert info.model.training  # reports between steps leave the model training

    def on_epoch_end(self, info, end):
        self.events.append(("end", end.epoch, sorted(end.figures), end.record["epoch"]))

    def on_train_end(self, info):
        self.events.append("finish")


def test_callbacks_see_every_epoch_and_the_figures(mnist_root, tmp_path):
    recorder = Recorder()
    avae.train(tiny_config(mnist_root, epochs=2, figures_every=2), out=tmp_path / "r", callbacks=[recorder])
    assert recorder.events == [("start", "r", 2), ("epoch", 1, 8, 0), ("end", 1, [], 1), ("epoch", 2, 8, 0),
                               ("end", 2, ["latents", "norms", "reconstructions", "samples"], 2), "finish"]
