"""What training reports, and where: a small callback interface and the reporters built on it.

The trainer calls every callback on rank 0 only, in order: `on_train_start`, then per epoch
`on_epoch_start`, `on_step_end` after each step and `on_epoch_end` after validation, and
`on_train_end` — or `on_train_stopped` when an error or an interrupt ends training early — each
with the run's `RunInfo` (what a report may read; not the trainer).

Built in: `Figures` (the pictures of an epoch; it fills `EpochEnd.figures` for the callbacks
after it), `MetricsLog` (metrics.jsonl) and `ProgressBar`. Trackers, each enabled by one
setting: `TensorBoard` (train.tensorboard), `WandB` (train.wandb, offline unless WANDB_MODE says
otherwise), `MLflow` (train.mlflow, a file store in the run directory unless MLFLOW_TRACKING_URI
is set). A user's own callbacks go to `avae.train(..., callbacks=[...])`.
"""
from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from . import config, report, run
from .data import ImageSet
from .errors import AvaeError


@dataclass
class EpochEnd:
    """What an epoch left behind."""

    epoch: int  # 1-based number of the epoch just finished
    record: dict  # its line of metrics.jsonl
    codes: torch.Tensor  # validation codes (CPU float32), for the latent figures
    figures: dict[str, Path] = field(default_factory=dict)  # name → PNG (samples, reconstructions, latents, norms)


@dataclass(frozen=True)
class RunInfo:
    """What a callback may read about the run being trained."""

    run_dir: Path
    config: dict  # the resolved config, as written to config.yaml
    settings: config.TrainConfig  # its train section: epochs, figures_every, ...
    model: torch.nn.Module  # trained in place: a callback that switches it to eval mode switches it back
    val_images: ImageSet  # the validation images (uint8, by index)
    value_range: tuple[float, float]  # what the model's float images span
    prepare: Callable[[torch.Tensor], torch.Tensor]  # uint8 images → the model's input on its device
    seed: int  # train.seed


class Callback:
    """Override what you need; every event gets the run's `RunInfo` first."""

    def on_train_start(self, info: RunInfo) -> None: ...

    def on_epoch_start(self, info: RunInfo, epoch: int, steps: int, start: int) -> None:
        """`epoch`: the 1-based number of the epoch beginning; `steps`: its number of SGD steps;
        `start`: the step it begins at (above 0 when a run resumes inside the epoch)."""

    def on_step_end(self, info: RunInfo, step: int, losses: dict[str, torch.Tensor]) -> None: ...

    def on_epoch_end(self, info: RunInfo, end: EpochEnd) -> None: ...

    def on_train_end(self, info: RunInfo) -> None: ...

    def on_train_stopped(self, info: RunInfo, error: BaseException) -> None:
        """Training ended early by `error` (an exception, or KeyboardInterrupt); the run resumes later."""


def check_callbacks(callbacks) -> list[Callback]:
    """The user's callbacks, each an avae.Callback (checked before anything is written)."""
    callbacks = list(callbacks)
    wrong = [type(c).__name__ for c in callbacks if not isinstance(c, Callback)]
    if wrong:
        raise AvaeError(f"callbacks must be avae.Callback instances, got {', '.join(wrong)}; subclass avae.Callback")
    return callbacks


class Figures(Callback):
    """Samples, reconstructions, latent scatter matrix and ‖z‖² histogram every `train.figures_every`
    epochs and after the last, in RUN_DIR/figures/epoch_NNN/."""

    def on_epoch_end(self, info, end):
        every, epochs = info.settings.figures_every, info.settings.epochs
        if not every or (end.epoch % every and end.epoch != epochs):
            return
        folder = run.subfolder(run.subfolder(info.run_dir, "figures"), f"epoch_{end.epoch:03d}")
        model, vr = info.model, info.value_range
        model.eval()
        with torch.no_grad():
            gen = torch.Generator().manual_seed(info.seed)  # the same codes every epoch
            report.save_samples(folder / "samples.png", report.to_uint8(model.sample(64, gen).float().cpu(), vr),
                                model.sampler)
            originals = info.val_images.images(np.arange(min(32, len(info.val_images))))
            recon = model.reconstruct(info.prepare(originals)).float().cpu()
            report.save_reconstructions(folder / "reconstructions.png", originals.numpy(), report.to_uint8(recon, vr),
                                        "validation")
        model.train()
        latent = report.save_latent_figures(folder, end.codes.numpy(), model.latent_variance, "validation").values()
        for path in [folder / "samples.png", folder / "reconstructions.png", *latent]:
            end.figures[path.stem] = path


class MetricsLog(Callback):
    """One JSON line per epoch in RUN_DIR/metrics.jsonl."""

    def on_epoch_end(self, info, end):
        run.append_metrics(info.run_dir, end.record)


class ProgressBar(Callback):
    """A tqdm bar per epoch (losses every 10 steps) and a summary line after it."""

    def on_epoch_start(self, info, epoch, steps, start):
        self.bar = tqdm(total=steps, initial=start, desc=f"epoch {epoch}/{info.settings.epochs}", leave=False,
                        dynamic_ncols=True)

    def on_step_end(self, info, step, losses):
        self.bar.update()
        if step % 10 == 0:
            self.bar.set_postfix({k: f"{float(v.detach()):.4g}" for k, v in losses.items()})

    def on_epoch_end(self, info, end):
        self.bar.close()
        tqdm.write(summary_line(end.record))

    def on_train_stopped(self, info, error):
        if getattr(self, "bar", None) is not None:
            self.bar.close()  # so the error that follows starts on a line of its own


def summary_line(r: dict) -> str:
    parts = [f"epoch {r['epoch']}", f"train loss {r.get('train_loss', float('nan')):.4g}",
             f"val recon {r.get('val_recon', float('nan')):.4g}"]
    if "sigma" in r:
        parts.append(f"σ {r['sigma']:.4g}")
    parts.append(f"{r['epoch_s']:.1f} s")
    return " | ".join(parts)


# --- experiment trackers ----------------------------------------------------------------------
def _numbers(record: dict) -> dict[str, float]:
    return {k: float(v) for k, v in record.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and k != "epoch"}


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _require(module: str, extra: str) -> None:
    if not installed(module):
        raise AvaeError(f"train.{extra} needs the '{module}' package; install it with pip install 'avae[{extra}]'")


class TensorBoard(Callback):
    """Scalars per epoch and the figures as images, in RUN_DIR/tensorboard/."""

    def __init__(self):
        _require("tensorboard", "tensorboard")

    def on_train_start(self, info):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(info.run_dir / "tensorboard"))

    def on_epoch_end(self, info, end):
        from PIL import Image

        for key, value in _numbers(end.record).items():
            self.writer.add_scalar(key, value, end.epoch)
        for title, path in end.figures.items():
            self.writer.add_image(title, np.asarray(Image.open(path).convert("RGB")), end.epoch, dataformats="HWC")
        self.writer.flush()

    def on_train_end(self, info):
        self.writer.close()

    def on_train_stopped(self, info, error):
        if hasattr(self, "writer"):  # (started)
            self.writer.close()


class WandB(Callback):
    """Weights & Biases: the config, scalars per epoch and the figures; offline (files under
    RUN_DIR/wandb, `wandb sync` uploads them) unless WANDB_MODE is set."""

    def __init__(self):
        _require("wandb", "wandb")

    def on_train_start(self, info):
        import wandb

        self.run = wandb.init(project="avae", name=info.run_dir.name, dir=str(info.run_dir),
                              config=config.flatten(info.config), mode=os.environ.get("WANDB_MODE", "offline"),
                              resume="allow", id=_safe_id(info.run_dir))

    def on_epoch_end(self, info, end):
        import wandb

        images = {title: wandb.Image(str(path)) for title, path in end.figures.items()}
        self.run.log({**_numbers(end.record), **images}, step=end.epoch)

    def on_train_end(self, info):
        self.run.finish()

    def on_train_stopped(self, info, error):
        if hasattr(self, "run"):
            self.run.finish(exit_code=1)


class MLflow(Callback):
    """MLflow: the config as parameters, scalars per epoch and the figures as artifacts; a file
    store in RUN_DIR/mlruns unless MLFLOW_TRACKING_URI is set."""

    def __init__(self):
        _require("mlflow", "mlflow")

    def on_train_start(self, info):
        import mlflow

        if "MLFLOW_TRACKING_URI" not in os.environ:  # a file store of the run's own (opted into:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow-skinny has no database)
            mlflow.set_tracking_uri((info.run_dir / "mlruns").resolve().as_uri())
        mlflow.set_experiment("avae")
        self.run = mlflow.start_run(run_name=info.run_dir.name)
        mlflow.log_params({k: str(v) for k, v in config.flatten(info.config).items()})

    def on_epoch_end(self, info, end):
        import mlflow

        mlflow.log_metrics(_numbers(end.record), step=end.epoch)
        for path in end.figures.values():
            mlflow.log_artifact(str(path), artifact_path=f"figures/epoch_{end.epoch:03d}")

    def on_train_end(self, info):
        import mlflow

        mlflow.end_run()

    def on_train_stopped(self, info, error):
        import mlflow

        if hasattr(self, "run"):
            mlflow.end_run("KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")


def _safe_id(run_dir: Path) -> str:
    """A W&B run id from the folder name (letters, digits, - and _ only), so a resume continues it."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in run_dir.resolve().name)[:64]


def from_settings(settings) -> list[Callback]:
    """The callbacks a run's train section asks for, built-ins first."""
    callbacks: list[Callback] = [Figures(), MetricsLog()]
    if settings.progress:
        callbacks.append(ProgressBar())
    for enabled, tracker in ((settings.tensorboard, TensorBoard), (settings.wandb, WandB), (settings.mlflow, MLflow)):
        if enabled:
            callbacks.append(tracker())
    return callbacks
