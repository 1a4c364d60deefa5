"""`avae export RUN_DIR`: a trained model for use without avae and without the training state.

  OUT/weights.pt      the model's state dict (plain tensors: torch.load(..., weights_only=True))
  OUT/config.yaml     the run's configuration
  OUT/data_spec.json  image shape, likelihood, value range (what the weights expect)
  OUT/encoder.pt2     torch.export programs, any batch size, loadable with torch alone:
  OUT/decoder.pt2       torch.export.load(path).module()(x) — float images (B, C, H, W) in the value
                        range → codes (B, l); codes → images, output activation included. The
                        programs were traced in inference mode (batch norm on its running
                        statistics) and stay so: torch refuses .eval() and .train() on them
  OUT/sampler.pt      the Gaussian generation draws codes from: {"mean", "scale_tril"}; codes are
                        mean + eps @ scale_tril.T with eps ~ N(0, I) drawn in mean's dtype (the
                        VampPrior: its mixture, in the gmm format below). With
                        sampler="gaussian", the Gaussian fitted by `avae fit-sampler` (the same keys);
                        with sampler="gmm", its mixture: {"weights" (K,), "means" (K, l),
                        "scale_trils" (K, l, l)}: component c ~ Categorical(weights), then codes =
                        means[c] + scale_trils[c] @ eps. Only these samplers are plain tensors: flow
                        and latent_diffusion are refused (they sample with avae: avae.load(RUN_DIR)
                        .sample(n, sampler=NAME))
"""
from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from . import atomic, run
from .errors import AvaeError
from .models import Model

FILES = ("weights.pt", "config.yaml", "data_spec.json", "encoder.pt2", "decoder.pt2", "sampler.pt")


class _Method(nn.Module):
    """One method of the model as a module's forward, for torch.export."""

    def __init__(self, model: Model, method: str):
        super().__init__()
        self.model, self.method = model, method

    def forward(self, x):
        return getattr(self.model, self.method)(x)


def exported(model: Model, method: str, example: torch.Tensor) -> torch.export.ExportedProgram:
    """`model.<method>` as a program whose first dimension (the batch) may take any size."""
    batch = torch.export.Dim("batch", min=1)
    try:
        return torch.export.export(_Method(model, method), (example,), dynamic_shapes={"x": {0: batch}})
    except Exception as e:  # a user's network that torch.export cannot trace
        raise AvaeError(f"torch.export could not export the model's {method}: {run.first_line(e)}; "
                        "weights.pt and config.yaml in the run directory still rebuild it with avae.load") from e


def export(run_dir, out=None, checkpoint: str = "last", *, trust_code: bool = False, sampler: str = "prior") -> Path:
    """Write the files above into `out` (default RUN_DIR/export); returns the folder. `trust_code`:
    open a run that names its own network classes. `sampler`: what sampler.pt holds (prior, or a
    gaussian or gmm fitted with `avae fit-sampler`)."""
    from . import samplers

    run_dir = run.as_path(run_dir, "run_dir")
    default = out is None
    out = run_dir / "export" if default else run.as_path(out, "out")
    if samplers.sampler_class(sampler).name not in samplers.exportable():
        raise AvaeError(f"avae export writes sampler.pt only for the samplers that are plain tensors "
                        f"({', '.join(samplers.exportable())}); {sampler} samples with avae: "
                        f"avae.load(run_dir).sample(n, sampler='{sampler}') or `avae sample RUN_DIR --sampler {sampler}`")
    model = run.load(run_dir, checkpoint, trust_code=trust_code)
    sampler_tensors = None if sampler == "prior" else samplers.for_model(model, sampler).export_tensors()
    _, spec = run.read(run_dir)
    if out.exists() and any(out.iterdir()) and not all((out / name).is_file() for name in FILES):
        raise AvaeError(f"{out} exists and holds other files; give an empty or new folder with --out")
    programs = {"encoder.pt2": exported(model, "encode", torch.zeros(2, *spec.shape)),
                "decoder.pt2": exported(model, "decode", torch.zeros(2, model.latent_dim))}
    if sampler_tensors is None:  # the model's own sampler
        sampler_tensors = model.sampler_tensors()
    out = run.subfolder(run_dir, "export") if default else run.make_folder(out)  # no link inside a run
    atomic.save_file(lambda path: torch.save(model.state_dict(), path), out / "weights.pt")
    atomic.save_file(lambda path: shutil.copyfile(run_dir / run.CONFIG, path), out / run.CONFIG)
    run.write_json(out / "data_spec.json", asdict(spec))
    for name, program in programs.items():
        atomic.save_file(lambda path: torch.export.save(program, path), out / name)
    atomic.save_file(lambda path: torch.save(sampler_tensors, path), out / "sampler.pt")
    return out
