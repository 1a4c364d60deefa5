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

Every tracker gets the same parameters, `tracker_params(config)` (the resolved config.yaml,
flattened); RUN_DIR/trackers.json records which MLflow and W&B run the trackers wrote into, so a
resumed run continues them and `log_evaluation` adds `avae evaluate`'s scores to them.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import sys
import time
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
    settings: config.TrainSettings  # its train section: epochs, figures_every, ...
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
        folder = run.subfolder(run.subfolder(info.run_dir, run.FIGURES), f"epoch_{end.epoch:03d}")
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
    """A bar for the whole run with its ETA, a bar per epoch (losses every 10 steps) and a summary
    line after each epoch."""

    run_bar = bar = None

    def on_epoch_start(self, info, epoch, steps, start):
        epochs, done = info.settings.epochs, (epoch - 1) * steps + start
        if self.run_bar is None:
            # smoothing=0: the ETA from the run's average pace, so validation and figures count too
            self.run_bar = tqdm(total=epochs * steps, initial=done, desc="run", unit="step", smoothing=0,
                                position=0, leave=False, dynamic_ncols=True)
        self.bar = tqdm(total=steps, initial=start, desc=f"epoch {epoch}/{epochs}", leave=False, position=1,
                        dynamic_ncols=True)

    def on_step_end(self, info, step, losses):
        self.bar.update()
        self.run_bar.update()
        if step % 10 == 0:
            self.bar.set_postfix({k: f"{float(v.detach()):.4g}" for k, v in losses.items()})

    def on_epoch_end(self, info, end):
        self.bar.close()
        tqdm.write(summary_line(end.record))

    def on_train_end(self, info):
        self._close()

    def on_train_stopped(self, info, error):
        self._close()  # so the error that follows starts on a line of its own

    def _close(self):
        for bar in (self.bar, self.run_bar):
            if bar is not None:
                bar.close()
        self.run_bar = self.bar = None


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


MAX_PARAM_CHARS = 500  # the longest parameter value every MLflow server takes (newer ones take 6,000)
TRACKERS = "trackers.json"  # RUN_DIR/trackers.json: {"mlflow": {"run_id", "tracking_uri"}, "wandb": {"id", "project"}}
NOT_SCORES = {"params", "kde_size_for_h", "samples", "n", "dims", "fit"}  # settings a score was computed with, not scores


def tracker_params(cfg: config.Config) -> dict[str, bool | int | float | str]:
    """The resolved configuration as every tracker gets it (W&B config, MLflow params, TensorBoard
    hparams): dotted names as `--set` spells them (`train.lr`, `model.sigma0_sq`), each value a
    bool, number or string; null, lists and empty mappings as JSON text ("null", "[1024, 1024]",
    "{}"), and a text longer than MAX_PARAM_CHARS cut there with "…" (config.yaml keeps it whole)."""
    return {_tracker_name(key): _param_value(value) for key, value in config.flatten(cfg.to_dict()).items()}


def _tracker_name(key: str) -> str:
    return re.sub(r"[^\w\-. /]", "_", key)  # only what MLflow allows in a name


def _param_value(value):
    if not isinstance(value, (bool, int, float, str)):
        value = json.dumps(value, default=str, ensure_ascii=False)
    if isinstance(value, str) and len(value) > MAX_PARAM_CHARS:
        value = value[: MAX_PARAM_CHARS - 1] + "…"
    return value


def evaluation_metrics(result: dict) -> dict[str, float]:
    """The scores of an evaluation (evaluate.json) as tracker metrics: every finite number of its
    sample_quality (eval/N/frechet_distance, eval/REC/prd/precision, ...), latent_quality
    (eval/latent/entropy/entropy, ...), likelihood (eval/likelihood/nll_nats, ...), samplers
    (eval/samplers/gmm/...) and disentanglement (eval/disentanglement/...) sections, named by its
    path there, without the settings they were computed with."""
    metrics: dict[str, float] = {}
    for section, prefix in (("sample_quality", "eval"), ("latent_quality", "eval/latent"),
                            ("likelihood", "eval/likelihood"), ("samplers", "eval/samplers"),
                            ("disentanglement", "eval/disentanglement")):
        _collect_scores(result.get(section), prefix, metrics)
    return metrics


def _collect_scores(value, name: str, out: dict) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            if key not in NOT_SCORES:
                _collect_scores(inner, f"{name}/{_tracker_name(str(key))}", out)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        out[name] = float(value)


def _hparams_start(run_dir: Path, cfg: config.Config):
    """The hparams plugin's session start: the configuration as hyper-parameters. No experiment
    summary is written, so TensorBoard's HPARAMS tab takes every scalar of the run as a metric of
    it: the epochs' (their last values are the final ones) and, after `avae evaluate`, eval/...."""
    from tensorboard.plugins.hparams import summary_v2

    return summary_v2.hparams_pb(tracker_params(cfg), trial_id=run_dir.name)


def _hparams_success():
    """The hparams plugin's session end, status success (TensorBoard shows a session's first end only)."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    end = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS, end_time_secs=time.time())
    summary = Summary()
    summary.value.add(tag=metadata.SESSION_END_INFO_TAG, tensor=metadata.NULL_TENSOR,
                      metadata=metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(session_end_info=end)))
    return summary


class TensorBoard(Callback):
    """Scalars per epoch and the figures as images, and the configuration as hyper-parameters (the
    HPARAMS tab, the run's scalars its metrics), in RUN_DIR/tensorboard/."""

    setting, label = "tensorboard", "TensorBoard"  # its train setting (and package), its name in notes

    def __init__(self):
        _require("tensorboard", "tensorboard")

    def on_train_start(self, info):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(info.run_dir / "tensorboard"))
        self.writer.file_writer.add_summary(_hparams_start(info.run_dir, info.config))

    def on_epoch_end(self, info, end):
        from PIL import Image

        for key, value in _numbers(end.record).items():
            self.writer.add_scalar(key, value, end.epoch)
        for title, path in end.figures.items():
            self.writer.add_image(title, np.asarray(Image.open(path).convert("RGB")), end.epoch, dataformats="HWC")
        self.writer.flush()

    def on_train_end(self, info):
        self.writer.file_writer.add_summary(_hparams_success())
        self.writer.close()

    def on_train_stopped(self, info, error):
        if hasattr(self, "writer"):  # (started)
            self.writer.close()

    @staticmethod
    def add_evaluation(run_dir: Path, cfg: config.Config, metrics: dict, step: int) -> None:
        """Add an evaluation's scores to the run this tracker recorded."""
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(str(run_dir / "tensorboard")) as writer:
            for key, value in metrics.items():
                writer.add_scalar(key, value, step)


class WandB(Callback):
    """Weights & Biases: the config, scalars per epoch and the figures; offline (files under
    RUN_DIR/wandb, `wandb sync` uploads them) unless WANDB_MODE is set."""

    setting, label = "wandb", "W&B"

    def __init__(self):
        _require("wandb", "wandb")

    def on_train_start(self, info):
        self.run = _wandb_run(info.run_dir, info.config)
        _remember(info.run_dir, "wandb", {"id": self.run.id, "project": WANDB_PROJECT})

    def on_epoch_end(self, info, end):
        import wandb

        images = {title: wandb.Image(str(path)) for title, path in end.figures.items()}
        self.run.log({**_numbers(end.record), **images}, step=end.epoch)

    def on_train_end(self, info):
        self.run.finish()

    def on_train_stopped(self, info, error):
        if hasattr(self, "run"):
            self.run.finish(exit_code=1)

    @staticmethod
    def add_evaluation(run_dir: Path, cfg: config.Config, metrics: dict, step: int) -> None:
        """Add an evaluation's scores to the run this tracker recorded."""
        wandb_run = _wandb_run(run_dir, cfg)
        try:
            wandb_run.summary.update(metrics)
        finally:
            wandb_run.finish()


class MLflow(Callback):
    """MLflow: the config as parameters, scalars per epoch and the figures as artifacts; a file
    store in RUN_DIR/mlruns unless MLFLOW_TRACKING_URI is set."""

    setting, label = "mlflow", "MLflow"

    def __init__(self):
        _require("mlflow", "mlflow")

    def on_train_start(self, info):
        import mlflow
        from mlflow.exceptions import MlflowException

        # a resumed run continues its MLflow run, in the store it was started in
        recorded = _recorded(info.run_dir, "mlflow") if run.has_checkpoint(info.run_dir) else {}
        if recorded.get("run_id"):
            mlflow.set_tracking_uri(recorded.get("tracking_uri") or _own_store(info.run_dir))
            try:
                self.run = mlflow.start_run(run_id=recorded["run_id"])
                return
            except MlflowException:  # gone from the store: a new MLflow run
                pass
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(uri or _own_store(info.run_dir))
        mlflow.set_experiment("avae")
        self.run = mlflow.start_run(run_name=info.run_dir.name)
        mlflow.log_params(tracker_params(info.config))
        _remember(info.run_dir, "mlflow", {"run_id": self.run.info.run_id, "tracking_uri": uri})

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

    @staticmethod
    def add_evaluation(run_dir: Path, cfg: config.Config, metrics: dict, step: int) -> None:
        """Add an evaluation's scores to the run this tracker recorded."""
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        recorded = _recorded(run_dir, "mlflow")
        if not recorded.get("run_id"):
            raise AvaeError(f"{run_dir / TRACKERS} records no MLflow run (the run was trained by an earlier avae)")
        client = MlflowClient(recorded.get("tracking_uri") or _own_store(run_dir))
        now = int(time.time() * 1000)
        client.log_batch(recorded["run_id"], metrics=[Metric(key, value, now, step) for key, value in metrics.items()])


TRACKER_CALLBACKS = (TensorBoard, WandB, MLflow)  # each switched on by its train setting


def _safe_id(run_dir: Path) -> str:
    """A W&B run id from the folder name (letters, digits, - and _ only), so a resume continues it."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in run_dir.resolve().name)[:64]


WANDB_PROJECT = "avae"


def _wandb_run(run_dir: Path, cfg: config.Config):
    """The run's W&B run, started or continued (the id trackers.json records, else one from the folder name)."""
    import wandb

    recorded = _recorded(run_dir, "wandb")
    return wandb.init(project=recorded.get("project", WANDB_PROJECT), name=run_dir.name, dir=str(run_dir),
                      config=tracker_params(cfg), mode=os.environ.get("WANDB_MODE", "offline"), resume="allow",
                      id=recorded.get("id") or _safe_id(run_dir))


def _own_store(run_dir: Path) -> str:
    """The tracking URI of the run's own MLflow file store, RUN_DIR/mlruns (opted into, as
    mlflow-skinny has no database)."""
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return (run_dir / "mlruns").resolve().as_uri()


def _trackers_file(run_dir: Path) -> dict:
    """trackers.json ({} if there is none, or it is unreadable)."""
    try:
        recorded = json.loads((run_dir / TRACKERS).read_text())
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def _recorded(run_dir: Path, tracker: str) -> dict:
    """What trackers.json records for one tracker ({} if nothing)."""
    entry = _trackers_file(run_dir).get(tracker)
    return entry if isinstance(entry, dict) else {}


def _remember(run_dir: Path, tracker: str, entry: dict) -> None:
    run.write_json(run_dir / TRACKERS, {**_trackers_file(run_dir), tracker: entry})


def log_evaluation(run_dir: Path, cfg: config.Config, result: dict) -> None:
    """Add an evaluation's scores (`evaluation_metrics`) to each tracker the run was trained with:
    TensorBoard scalars at the evaluated checkpoint's epoch in RUN_DIR/tensorboard (so also metrics
    in its HPARAMS tab), the MLflow run's metrics at that step, the W&B run's summary. A tracker
    whose package is missing, or that fails, gets a one-line note on stderr; the evaluation stands."""
    run_dir = Path(run_dir)
    trackers = [tracker for tracker in TRACKER_CALLBACKS if getattr(cfg.train, tracker.setting)]
    if not trackers:
        return
    metrics = evaluation_metrics(result)
    step = int((result.get("trained") or {}).get("epochs_done") or len(run.read_metrics(run_dir)))
    for tracker in trackers:  # (each setting is named after its package)
        if not installed(tracker.setting):
            print(f"note: the evaluation is not logged to {tracker.label}: the '{tracker.setting}' package is not "
                  f"installed (pip install 'avae[{tracker.setting}]')", file=sys.stderr)
            continue
        try:
            tracker.add_evaluation(run_dir, cfg, metrics, step)
        except Exception as e:  # a tracker's own failure (a store gone, a server down) leaves the evaluation standing
            print(f"note: the evaluation is not logged to {tracker.label}: {run.first_line(e)}", file=sys.stderr)


def from_settings(settings) -> list[Callback]:
    """The callbacks a run's train section asks for, built-ins first."""
    callbacks: list[Callback] = [Figures(), MetricsLog()]
    if settings.progress:
        callbacks.append(ProgressBar())
    return callbacks + [tracker() for tracker in TRACKER_CALLBACKS if getattr(settings, tracker.setting)]
