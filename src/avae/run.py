"""A run directory: everything training writes and everything else reads back.

  config.yaml        the resolved configuration
  run.json           status (running/finished), data spec, versions
  metrics.jsonl      one line per epoch
  checkpoints/       last.pt and best.pt, each written atomically
  figures/epoch_NNN/ samples, reconstructions, latent scatter matrix, ‖z‖² histogram

Training, evaluation, the benchmark, the CLI and `avae.load` all go through these functions.
"""
from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import __version__, config as config_mod
from .config import TrainConfig
from .data import Dataset, load_dataset
from .errors import AvaeError
from .models import DataSpec, Model, build_model

CONFIG, INFO, METRICS, CHECKPOINTS = "config.yaml", "run.json", "metrics.jsonl", "checkpoints"


# --- data and model of a config -------------------------------------------------------------
def load_data(cfg: dict, *, cut: bool = True) -> Dataset:
    """The dataset of a config; with `cut`, the training and validation sets cut to the sizes asked."""
    dc = cfg["data"]
    data = load_dataset(dc["name"], root=dc.get("root"), seed=dc.get("split_seed", 0), **(dc.get("options") or {}))
    if not cut:
        return data
    train_size, val_size = dc.get("train_size"), dc.get("val_size")
    if train_size is not None:
        if not isinstance(train_size, int) or not 1 <= train_size <= len(data.train):
            raise AvaeError(f"data.train_size must be between 1 and {len(data.train)}, got {train_size!r}")
        pick = np.random.default_rng([cfg["train"].get("seed", 0), 2]).choice(len(data.train), train_size, replace=False)
        data.train = data.train.subset(np.sort(pick))
    if val_size is not None:
        if not isinstance(val_size, int) or not 1 <= val_size <= len(data.val):
            raise AvaeError(f"data.val_size must be between 1 and {len(data.val)}, got {val_size!r}")
        data.val = data.val.subset(np.arange(val_size))
    batch_size = cfg["train"].get("batch_size", TrainConfig.batch_size)
    if len(data.train) < batch_size:
        raise AvaeError(f"the training split holds {len(data.train)} images, fewer than train.batch_size {batch_size}; "
                        "lower train.batch_size or add images")
    return data


def data_spec(data: Dataset) -> DataSpec:
    return DataSpec(
        shape=tuple(data.shape),
        likelihood=data.likelihood,
        value_range=tuple(data.value_range),
        train_size=len(data.train),
        has_factors=data.factors is not None,
    )


def new_model(cfg: dict, spec: DataSpec) -> Model:
    """The model of a config with the initial weights of its seed; torch's global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg["train"].get("seed", 0))
        return build_model(cfg["model"], spec)


# --- the directory ----------------------------------------------------------------------------
def create(run_dir: Path, cfg: dict, spec: DataSpec, dataset_info: dict) -> None:
    """A new run directory holding the config and a 'running' status."""
    if (run_dir / INFO).exists():
        raise AvaeError(f"{run_dir} already holds a run; resume it with `avae train --resume {run_dir}` or pick --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG).write_text(config_mod.dump(cfg))
    write_json(run_dir / INFO, {
        "status": "running", "data_spec": asdict(spec), "avae": __version__, "torch": torch.__version__,
        "python": platform.python_version(), "dataset_info": dataset_info,
    })


def mark_finished(run_dir: Path, epochs_done: int) -> None:
    info = json.loads((run_dir / INFO).read_text())
    write_json(run_dir / INFO, {**info, "status": "finished", "epochs_done": epochs_done})


def status(run_dir: Path) -> str | None:
    """'running' or 'finished'; None where the folder holds no readable run.json."""
    try:
        return json.loads((run_dir / INFO).read_text())["status"]
    except (OSError, ValueError, KeyError):
        return None


def read(run_dir: Path) -> tuple[dict, DataSpec]:
    """The config and data spec of an existing run directory."""
    cfg_path, info_path = run_dir / CONFIG, run_dir / INFO
    if not cfg_path.is_file() or not info_path.is_file():
        raise AvaeError(f"{run_dir} is not a run directory (no config.yaml/run.json); give a folder made by `avae train`")
    try:
        cfg = config_mod.load_yaml(cfg_path.read_text())
        spec = json.loads(info_path.read_text())["data_spec"]
    except (ValueError, KeyError, config_mod.yaml.YAMLError):
        raise AvaeError(f"{run_dir} has a corrupt config.yaml or run.json; start a new run") from None
    spec["shape"], spec["value_range"] = tuple(spec["shape"]), tuple(spec["value_range"])
    return cfg, DataSpec(**spec)


def recorded_data(run_dir: Path) -> dict:
    """The description of its data that a run recorded when it started (run.json's dataset_info)."""
    return json.loads((run_dir / INFO).read_text()).get("dataset_info", {})


def load(run_dir, checkpoint: str = "last", device: str | torch.device = "cpu") -> Model:
    """The trained model of a run directory (`checkpoint` 'last' or 'best') on `device`, in eval mode
    with its parameters frozen: `encode`, `decode`, `reconstruct` and `sample` work on float images
    in the data's value range. torch's global random state is left alone."""
    run_dir = Path(run_dir)
    if checkpoint not in ("last", "best"):
        raise AvaeError(f"checkpoint must be 'last' or 'best', got {checkpoint!r}")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise AvaeError(f"'{device}' is not a device; use cpu, cuda or cuda:N") from None
    cfg, spec = read(run_dir)
    model = new_model(cfg, spec)
    load_weights(model, run_dir, checkpoint)
    return model.to(device).eval().requires_grad_(False)


# --- checkpoints ------------------------------------------------------------------------------
def checkpoint_path(run_dir: Path, which: str) -> Path:
    return run_dir / CHECKPOINTS / f"{which}.pt"


def save_checkpoint(state: dict, run_dir: Path, which: str) -> None:
    path = checkpoint_path(run_dir, which)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(lambda tmp: torch.save(state, tmp), path)


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise AvaeError(f"checkpoint {path} does not exist; train the run first")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged file
        raise AvaeError(f"checkpoint {path} cannot be read ({type(e).__name__}); it is corrupt, resume from another run") from None


def load_weights(model: Model, run_dir: Path, which: str = "last") -> dict:
    """Load a checkpoint's model state into `model`; returns the whole checkpoint."""
    state = load_checkpoint(checkpoint_path(run_dir, which))
    model.load_state_dict(state["model"])
    model.load_extra_state(state["model_extra"])
    return state


# --- the metrics log --------------------------------------------------------------------------
def append_metrics(run_dir: Path, record: dict) -> None:
    with open(run_dir / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def truncate_metrics(run_dir: Path, epochs_done: int) -> None:
    """Drop lines of epochs the checkpoint does not hold (a kill between log and save)."""
    path = run_dir / METRICS
    if path.is_file():
        kept = [r for r in read_metrics(run_dir) if r["epoch"] <= epochs_done]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))


def save_file(write: Callable[[Path], object], path: Path) -> None:
    """Write a file atomically: `write` fills a temporary file that then replaces `path`, so a
    reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    save_file(lambda tmp: tmp.write_text(json.dumps(obj, indent=1)), path)
