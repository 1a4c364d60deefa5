"""The public functions: one per command, each doing what the command does and returning what it
made (`avae.train(...)` is `avae train`, and so on); the command line is a thin layer over them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import report, run, samplers
from .comparison import COMPARISON, compare as _compare, write_html
from .errors import AvaeError
from .evaluation import evaluate
from .exporter import export
from .kde_bandwidth import bandwidth
from .run import load
from .trainer import resume, train

__all__ = ["bandwidth", "compare", "evaluate", "export", "load", "resume", "sample", "train"]


def sample(run_dir, n: int, *, seed: int = 0, checkpoint: str = "last", sampler="prior",
           trust_code: bool = False) -> np.ndarray:
    """`avae sample`: n generated images (uint8, NCHW) of a trained run, their codes drawn by
    `sampler` ('prior', the model's own, or a sampler fitted by `avae fit-sampler`) from a
    generator seeded with `seed`."""
    from . import schema

    schema.check_value("n", n, int, {"minimum": 1})
    schema.check_value("seed", seed, int, schema.SEED)
    if isinstance(sampler, str):
        samplers.sampler_class(sampler)  # an unknown name before the model is opened
    model = run.load(run_dir, checkpoint, trust_code=trust_code)
    drawn_by = samplers.for_model(model, sampler)
    generator, images = torch.Generator().manual_seed(seed), []
    for start in range(0, n, 1000):
        batch = model.sample(min(1000, n - start), generator, sampler=drawn_by)
        if not torch.isfinite(batch).all():
            raise AvaeError(f"the model of {run_dir} produced non-finite images (NaN or inf); it cannot be sampled, "
                            "retrain it (e.g. with a lower train.lr)")
        images.append(report.to_uint8(batch, model.spec.value_range))
    return np.concatenate(images)


def compare(run_dirs, out: str | Path | None = None) -> dict:
    """`avae compare`: the evaluation results of several runs side by side (refused where they
    are not comparable), with the settings that differ; `out`: also write comparison.html into
    that folder."""
    folder = run.make_folder(run.as_path(out, "out")) if out is not None else None  # refused before any work
    comparison = _compare(run_dirs)
    if folder is not None:
        write_html(folder / COMPARISON, comparison)
    return comparison
