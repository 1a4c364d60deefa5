"""`avae export RUN_DIR`: a trained model for use without avae and without the training state.

  OUT/weights.pt      the model's state dict (plain tensors: torch.load(..., weights_only=True))
  OUT/config.yaml     the run's configuration
  OUT/data_spec.json  image shape, likelihood, value range (what the weights expect)
  OUT/model.pt        TorchScript, loadable with torch alone (torch.jit.load):
                        encode(x)        float images (B, C, H, W) in the value range → codes (B, l)
                        decode(z)        codes → images, output activation included
                        sample(n, seed)  n generated images, the model's sampler with its own generator
                        sample_latent(n, seed)  the codes sample(n, seed) decodes
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from . import run
from .errors import AvaeError
from .models import Model

FILES = ("weights.pt", "config.yaml", "data_spec.json", "model.pt")


class _Method(nn.Module):
    """One method of the model as a module's forward, for tracing."""

    def __init__(self, model: Model, method: str):
        super().__init__()
        self.model, self.method = model, method

    def forward(self, x):
        return getattr(self.model, self.method)(x)


class Portable(nn.Module):
    """The traced encoder and decoder with the sampler's Gaussian (scripted as one module)."""

    def __init__(self, model: Model):
        super().__init__()
        c, h, w = model.spec.shape
        self.encoder = torch.jit.trace(_Method(model, "encode"), torch.zeros(2, c, h, w))
        self.decoder = torch.jit.trace(_Method(model, "decode"), torch.zeros(2, model.latent_dim))
        mean, scale_tril = model.sampling_gaussian()
        self.register_buffer("mean", mean.clone())
        self.register_buffer("scale_tril", scale_tril.clone())
        self.latent_dim = model.latent_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction of x."""
        return self.decode(self.encode(x))

    @torch.jit.export
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    @torch.jit.export
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    @torch.jit.export
    def sample_latent(self, n: int, seed: int) -> torch.Tensor:
        generator = torch.Generator()
        generator.manual_seed(seed)
        eps = torch.randn([n, self.latent_dim], generator=generator, dtype=self.mean.dtype)
        return (self.mean + eps @ self.scale_tril.T).float()

    @torch.jit.export
    def sample(self, n: int, seed: int) -> torch.Tensor:
        return self.decode(self.sample_latent(n, seed))


def export(run_dir, out=None, checkpoint: str = "last") -> Path:
    """Write the files above into `out` (default RUN_DIR/export); returns the folder."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "export"
    model = run.load(run_dir, checkpoint)
    _, spec = run.read(run_dir)
    if out.exists() and any(out.iterdir()) and not all((out / name).is_file() for name in FILES):
        raise AvaeError(f"{out} exists and holds other files; give an empty or new folder with --out")
    out.mkdir(parents=True, exist_ok=True)
    scripted = torch.jit.script(Portable(model))
    run.save_file(lambda path: torch.save(model.state_dict(), path), out / "weights.pt")
    run.save_file(lambda path: shutil.copyfile(run_dir / run.CONFIG, path), out / "config.yaml")
    run.write_json(out / "data_spec.json", asdict(spec))
    run.save_file(lambda path: torch.jit.save(scripted, str(path)), out / "model.pt")
    return out
