"""Python objects in: `avae.train(data=..., encoder=..., decoder=...)` with tensors, arrays, torch
Datasets and nn.Module instances, and what resuming, evaluating and opening such a run need."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import avae
from avae import run
from avae.cli import main

TINY = {"model": {"name": "avae", "latent_dim": 3, "kde_size": 60},
        "train": {"epochs": 1, "batch_size": 40, "figures_every": 0, "progress": False}}
EVALUATE = {"n": 40, "disentanglement": "none", "likelihood_samples": 0, "classifier_images": 100, "progress": False}

NETS = '''
import torch
from torch import nn


class Encoder(nn.Module):
    def __init__(self, out_dim):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 32), nn.ReLU(), nn.Linear(32, out_dim))

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, latent_dim):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, 32), nn.ReLU(), nn.Linear(32, 32 * 32), nn.Unflatten(1, (1, 32, 32)))

    def forward(self, z):
        return self.net(z)
'''


def images(n=300, seed=0) -> np.ndarray:
    """Float images in [0, 1], (N, H, W, C): a bright square on noise."""
    x = np.random.default_rng(seed).random((n, 32, 32, 1)).astype(np.float32) * 0.3
    x[:, 8:24, 8:24] = 1.0
    return x


def script(tmp_path, name: str, body: str, cwd) -> subprocess.CompletedProcess:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return subprocess.run([sys.executable, str(path)], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def given_run(tmp_path_factory):
    """A run trained by a script whose networks are classes of its own module (__main__) and of a module
    beside it, on a float tensor with val_data; then that folder is deleted."""
    folder = tmp_path_factory.mktemp("script")
    (folder / "my_nets.py").write_text(NETS)
    out = tmp_path_factory.mktemp("runs") / "r"
    proc = script(folder, "train.py", f'''
        import numpy as np, torch, avae
        from torch import nn
        from my_nets import Encoder

        class Decoder(nn.Module):  # defined in the script itself
            def __init__(self):
                super().__init__()
                self.net = nn.Sequential(nn.Linear(3, 32 * 32), nn.Unflatten(1, (1, 32, 32)))

            def forward(self, z):
                return self.net(z)

        x = np.random.default_rng(0).random((300, 32, 32, 1)).astype(np.float32) * 0.3
        x[:, 8:24, 8:24] = 1.0
        data, val = torch.from_numpy(x[:240]), torch.from_numpy(x[240:])
        avae.train({TINY!r}, out={str(out)!r}, data=data, val_data=val, encoder=Encoder(3), decoder=Decoder())
    ''', cwd=folder)
    assert proc.returncode == 0, proc.stderr
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    return out, proc.stderr


def test_a_run_on_given_objects_records_what_it_can_and_says_what_it_will_need(given_run):
    run_dir, stderr = given_run
    assert run.status(run_dir) == "finished"
    cfg, spec = run.read(run_dir)
    assert cfg.data.name == "python" and spec.shape == (1, 32, 32)
    assert cfg.model.encoder == {"class": "my_nets:Encoder", "given": True}
    assert cfg.model.decoder == {"class": "__main__:Decoder", "given": True}
    info = json.loads((run_dir / "run.json").read_text())["dataset_info"]
    assert info["source"]["data"] == {"type": "torch.Tensor", "shape": [240, 1, 32, 32]}
    assert info["sizes"] == {"train": 240, "val": 60, "test": 0} and len(info["fingerprint"]) == 16
    assert (run_dir / "networks.pkl").is_file() and (run_dir / "code" / "my_nets.py").read_text() == NETS
    (note,) = [line for line in stderr.splitlines() if line.startswith("note: ")]
    assert "data=" in note and "trust_code=True" in note and "networks.pkl" in note


def test_the_run_opens_from_another_folder_only_on_the_users_word(given_run, tmp_path, capsys):
    run_dir, _ = given_run
    with pytest.raises(avae.AvaeError, match="names its own network classes"):
        avae.load(run_dir)
    assert main(["sample", str(run_dir), "-n", "4", "--out", str(tmp_path)]) == 2
    assert "--trust-code" in capsys.readouterr().err
    proc = subprocess.run([sys.executable, "-m", "avae", "sample", str(run_dir), "-n", "4", "--trust-code", "--out",
                           str(tmp_path)], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert np.load(tmp_path / "samples.npy").shape == (4, 1, 32, 32)
    model = avae.load(run_dir, trust_code=True)
    assert type(model.encoder).__name__ == "Encoder" and model.sample(2).shape == (2, 1, 32, 32)


def test_evaluating_and_resuming_need_the_same_images(given_run, capsys):
    run_dir, _ = given_run
    x = images()
    with pytest.raises(avae.AvaeError, match=r"given in Python .*avae.evaluate\(RUN, data=\.\.\."):
        avae.evaluate(run_dir, trust_code=True, **EVALUATE)
    assert main(["evaluate", str(run_dir), "--trust-code", "-n", "40"]) == 2
    assert "avae.evaluate(RUN, data=..." in capsys.readouterr().err
    with pytest.raises(avae.AvaeError, match="differ from those this run was trained on"):
        avae.evaluate(run_dir, trust_code=True, data=x[:200], val_data=x[200:], **EVALUATE)
    with pytest.raises(avae.AvaeError, match="given in Python"):
        avae.resume(run_dir, trust_code=True)
    # the same pixels in another container (uint8, channels first) are the same images
    as_uint8 = np.rint(x.transpose(0, 3, 1, 2) * 255).astype(np.uint8)
    result = avae.evaluate(run_dir, trust_code=True, data=as_uint8[:240], val_data=as_uint8[240:], **EVALUATE)
    assert np.isfinite(result["sample_quality"]["N"]["frechet_distance"])
    assert avae.resume(run_dir, trust_code=True, data=as_uint8[:240], val_data=as_uint8[240:]) == run_dir


class Pairs(torch.utils.data.Dataset):
    """A map-style Dataset of (image, label) items, as torchvision's are."""

    def __init__(self, x):
        self.x = torch.from_numpy(x).permute(0, 3, 1, 2)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], i % 2


def test_a_torch_dataset_with_labels_trains_with_the_built_in_networks(tmp_path):
    run_dir = avae.train({**TINY, "model": {"name": "vae", "latent_dim": 3}}, out=tmp_path / "r", data=Pairs(images()))
    cfg, _ = run.read(run_dir)
    info = json.loads((run_dir / "run.json").read_text())["dataset_info"]
    assert cfg.model.encoder is None and info["classes"] == [0, 1]
    assert info["sizes"] == {"train": 270, "val": 30, "test": 0}  # data.options.val_fraction 0.1, drawn at random
    assert not (run_dir / "networks.pkl").exists()
    result = avae.evaluate(run_dir, data=Pairs(images()), **EVALUATE)
    assert result["feature_space"]["name"] == "classifier"  # the labels make the feature classifier possible


@pytest.mark.parametrize("kwargs, message", [
    ({"data": np.zeros((10, 5, 32, 32), np.uint8)}, r"shape \(10, 5, 32, 32\); give images as"),
    ({"data": np.full((10, 32, 32), 2.0, np.float32)}, r"outside \[0, 1\]"),
    ({"data": np.zeros((10, 32, 32), np.int32)}, "int32 values"),
    ({"data": [1, 2, 3]}, "must be a tensor, a NumPy array"),
    ({"data": (np.zeros((10, 32, 32), np.uint8), np.zeros(9, np.int64))}, "10 images but 9 labels"),
    ({"val_data": np.zeros((10, 32, 32), np.uint8)}, "val_data= goes with data="),
    ({"encoder": torch.nn.Linear(2, 2)}, "give both encoder= and decoder="),
    ({"encoder": "nets:Encoder", "decoder": torch.nn.Linear(2, 2)}, "encoder must be a torch.nn.Module instance"),
])
def test_bad_objects_are_one_line_errors_before_a_folder_is_made(tmp_path, kwargs, message):
    with pytest.raises(avae.AvaeError, match=message) as caught:
        avae.train(TINY, out=tmp_path / "r", **kwargs)
    assert "\n" not in str(caught.value) and not (tmp_path / "r").exists()
