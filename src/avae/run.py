"""A run directory: everything training writes and everything else reads back.

  config.yaml        the resolved configuration
  run.json           status (running/interrupted/finished/failed), data spec, data provenance, versions,
                     `auto` choices, where the user's network classes were imported from
  metrics.jsonl      one line per epoch
  checkpoints/       last.pt and best.pt, each written atomically
  figures/epoch_NNN/ samples, reconstructions, latent scatter matrix, ‖z‖² histogram
  .lock              held by the one process training the run

Training, evaluation, the benchmark, the CLI and `avae.load` all go through these functions;
every damaged file is reported in one line naming it.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from . import __version__, config as config_mod, schema, user_nets
from .atomic import LINK_ADVICE, remove_stale_temporaries, save_file
from .errors import AvaeError
from .models import DataSpec, Model, new_model

CONFIG, INFO, METRICS, CHECKPOINTS = "config.yaml", "run.json", "metrics.jsonl", "checkpoints"
FIGURES, PREVIOUS = "figures", "previous"  # the figures of each epoch; earlier files of a run started again
# what `avae evaluate` writes into the run directory: the results, their page, the figures and unfinished phases
EVALUATION, EVALUATION_PAGE, EVALUATION_FOLDER = "evaluate.json", "evaluate.html", "evaluation"
NEW_RUN = "start a new run with `avae train --out NEW_DIR`"


def as_path(value, what: str) -> Path:
    """A path given through the Python API (a str or os.PathLike, not empty)."""
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise AvaeError(f"{what} must be a path (str or pathlib.Path), got {schema.show(value)}")
    return Path(value)


# --- creating a run, and its states -----------------------------------------------------------
def make_folder(path: Path, what: str = "--out") -> Path:
    """A folder to write into, or one line saying why it cannot be."""
    if path.exists() and not path.is_dir():
        raise AvaeError(f"{what} {path} is a file, not a folder; give a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AvaeError(f"{what} {path} cannot be created ({e.strerror}); give a folder you can write to") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise AvaeError(f"{what} {path} is not writable; give a folder you can write to")
    return path


@contextmanager
def lock(run_dir: Path):
    """Hold RUN_DIR/.lock while training: a second trainer is refused, and the kernel releases the
    lock when its process dies (even by SIGKILL), so a killed run never stays locked."""
    handle = os.fdopen(_open_no_follow(run_dir / ".lock", os.O_RDWR | os.O_CREAT), "r+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise AvaeError(f"{run_dir} is being trained by another process (pid {holder}); wait for it to end, "
                        "or stop it and resume") from None
    try:
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        remove_stale_temporaries(run_dir, run_dir / CHECKPOINTS)
        yield
    finally:
        handle.close()


def create(run_dir: Path, cfg: config_mod.Config, spec: DataSpec, dataset_info: dict, auto: dict, code: dict) -> None:
    """config.yaml and a 'running' run.json. A run that ended before its first checkpoint is started
    again, its earlier files kept aside in RUN_DIR/previous/N/ (never appended to)."""
    if (run_dir / INFO).exists():
        if status(run_dir) == "finished" or has_checkpoint(run_dir):
            finished = " (finished; nothing retrains it)" if status(run_dir) == "finished" else ""
            raise AvaeError(f"{run_dir} already holds a run{finished}; resume it with `avae train --resume {run_dir}` "
                            "or pick another --out")
        _set_aside(run_dir)
    save_file(lambda tmp: tmp.write_text(config_mod.dump(cfg)), run_dir / CONFIG)
    write_json(run_dir / INFO, {
        "status": "running", "data_spec": asdict(spec), "avae": __version__, "torch": torch.__version__,
        "python": platform.python_version(), "dataset_info": dataset_info, "auto": auto, "code": code,
    })


def check_resumable(run_dir: Path) -> None:
    """A resume continues from checkpoints/last.pt or refuses, never starting over what is there."""
    if checkpoint_path(run_dir, "last").is_file():
        return
    if status(run_dir) == "finished" or checkpoint_path(run_dir, "best").exists():
        raise AvaeError(f"{run_dir} has no checkpoints/last.pt, so it cannot resume; put the file back "
                        "(nothing was changed; best.pt still opens with --checkpoint best)")
    raise AvaeError(f"{run_dir} ended before its first checkpoint, so nothing resumes; start it again with "
                    f"`avae train --config {run_dir / CONFIG} --out {run_dir}` (its earlier files are kept aside "
                    f"in {run_dir / 'previous'}/)")


def has_checkpoint(run_dir: Path) -> bool:
    return checkpoint_path(run_dir, "last").exists() or checkpoint_path(run_dir, "best").exists()


def _set_aside(run_dir: Path) -> None:
    """Move a run's files into the first free RUN_DIR/previous/N/."""
    previous = subfolder(run_dir, PREVIOUS)
    number = 1 + max((int(p.name) for p in previous.iterdir() if p.name.isdigit()), default=0)
    kept = subfolder(previous, str(number))
    for name in (CONFIG, INFO, METRICS, CHECKPOINTS, FIGURES):
        if os.path.lexists(run_dir / name):
            os.replace(run_dir / name, kept / name)


def mark_finished(run_dir: Path, epochs_done: int) -> None:
    write_json(run_dir / INFO, {**info(run_dir), "status": "finished", "epochs_done": epochs_done})


def mark_interrupted(run_dir: Path) -> None:
    write_json(run_dir / INFO, {**info(run_dir), "status": "interrupted"})


def mark_failed(run_dir: Path, reason: str) -> None:
    write_json(run_dir / INFO, {**info(run_dir), "status": "failed", "error": reason})


# --- reading a run ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Record:
    """What a run directory says of itself, read once per command: config.yaml and run.json."""

    run_dir: Path
    cfg: config_mod.Config
    spec: DataSpec
    info: dict  # run.json

    @property
    def status(self) -> str | None:
        return self.info.get("status")

    @property
    def data(self) -> dict:
        """The description of its data that the run recorded when it started (run.json's dataset_info)."""
        return self.info.get("dataset_info", {})

    @property
    def code(self) -> dict:
        """Where its own network classes were imported from (run.json's code)."""
        return self.info.get("code") or {}


def read(run_dir: Path) -> tuple[config_mod.Config, DataSpec]:
    """The config and data spec of an existing run directory (checked: a damaged file is named)."""
    record = read_record(run_dir)
    return record.cfg, record.spec


def read_record(run_dir: Path) -> Record:
    """config.yaml and run.json of an existing run directory (checked: a damaged file is named)."""
    cfg_path, info_path = run_dir / CONFIG, run_dir / INFO
    if not cfg_path.is_file() or not info_path.is_file():
        raise AvaeError(f"{run_dir} is not a run directory (no config.yaml/run.json); give a folder made by `avae train`")
    try:
        cfg = config_mod.Config.from_dict(config_mod.load_yaml(cfg_path.read_text()))
    except (ValueError, config_mod.yaml.YAMLError, AvaeError) as e:
        raise AvaeError(f"{cfg_path} is damaged ({first_line(e)}); {NEW_RUN}") from None
    record = info(run_dir)
    return Record(run_dir, cfg, _data_spec(record, info_path), record)


def info(run_dir: Path) -> dict:
    """run.json: status, data spec, data provenance, versions."""
    path = run_dir / INFO
    try:
        record = json.loads(path.read_text())
    except ValueError as e:
        raise AvaeError(f"{path} is damaged (not JSON: {first_line(e)}); {NEW_RUN}") from None
    if not isinstance(record, dict):
        raise AvaeError(f"{path} is damaged (it holds a {type(record).__name__}, not a mapping); {NEW_RUN}")
    return record


def status(run_dir: Path) -> str | None:
    """'running' (or killed), 'interrupted' (Ctrl-C), 'finished' or 'failed'; None where the folder
    holds no readable run.json."""
    try:
        return info(run_dir).get("status")
    except (OSError, AvaeError):
        return None


def _data_spec(record: dict, path: Path) -> DataSpec:
    spec = record.get("data_spec")
    known = [f.name for f in fields(DataSpec)]
    try:
        spec = DataSpec(**{**spec, "shape": tuple(spec["shape"]), "value_range": tuple(spec["value_range"])})
        ok = (len(spec.shape) == 3 and all(isinstance(v, int) and v > 0 for v in spec.shape)
              and len(spec.value_range) == 2 and isinstance(spec.train_size, int) and isinstance(spec.likelihood, str))
    except (TypeError, KeyError):
        ok = False
    if not ok:
        raise AvaeError(f"{path} is damaged (its data_spec must hold {', '.join(known)}); {NEW_RUN}")
    return spec


def load(run_dir, checkpoint: str = "last", device: str | torch.device = "cpu", *, trust_code: bool = False) -> Model:
    """The trained model of a run directory (`checkpoint` 'last' or 'best') on `device`, in eval mode
    with its parameters frozen: `encode`, `decode`, `reconstruct` and `sample` work on float images
    in the data's value range. A run naming its own network classes is opened only with
    `trust_code=True` (building it runs their code). torch's global random state is left alone."""
    run_dir = as_path(run_dir, "run_dir")
    if checkpoint not in ("last", "best"):
        raise AvaeError(f"checkpoint must be 'last' or 'best', got {checkpoint!r}")
    device = _device(device)
    model = open_model(read_record(run_dir), trust_code)
    load_weights(model, run_dir, checkpoint)
    model.origin = Origin(run_dir, checkpoint, checkpoint_sha256(run_dir, checkpoint))
    return model.to(device).eval().requires_grad_(False)


def open_model(record: Record, trust_code: bool) -> Model:
    """A run's model with its initial weights, its own network classes imported only on the user's word."""
    with user_nets.trusted(record.run_dir, record.cfg.model, record.code, trust_code):
        given = user_nets.load_given(record.run_dir) if user_nets.is_given(record.cfg.model) else None
        return new_model(record.cfg, record.spec, given)


def _device(name) -> torch.device:
    """A device this machine has, or one line saying it has not."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise AvaeError(f"'{name}' is not a device; use cpu, cuda or cuda:N") from None
    counts = {"cpu": 1, "cuda": torch.cuda.device_count(), "mps": int(torch.backends.mps.is_available())}
    if (device.index or 0) >= counts.get(device.type, 0):
        raise AvaeError(f"device '{name}' is not on this machine (torch sees {counts['cuda']} GPU(s)); use cpu")
    return device


# --- checkpoints ------------------------------------------------------------------------------
CHECKPOINT_KEYS = ("model", "model_extra", "optimizer", "scheduler", "torch_rng", "epoch", "step", "sums",
                   "train_seconds", "best")


def checkpoint_path(run_dir: Path, which: str) -> Path:
    return run_dir / CHECKPOINTS / f"{which}.pt"


def checkpoint_sha256(run_dir: Path, which: str = "last") -> str:
    """SHA-256 of a checkpoint file: what a sampler fitted to its codes records, so that a sampler
    is never used with other weights."""
    path = checkpoint_path(run_dir, which)
    if not path.is_file():
        raise AvaeError(f"checkpoint {path} does not exist; train the run first")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Origin:
    """Where `load` opened a model: its run, checkpoint and the checkpoint's SHA-256 (so that
    `model.sample(n, sampler="gmm")` finds the run's sampler fitted to these weights)."""

    run_dir: Path
    checkpoint: str
    sha256: str


def save_checkpoint(state: dict, run_dir: Path, which: str) -> None:
    path = subfolder(run_dir, CHECKPOINTS) / f"{which}.pt"
    save_file(lambda tmp: torch.save(state, tmp), path)


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise AvaeError(f"checkpoint {path} does not exist; train the run first")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged file
        raise AvaeError(f"checkpoint {path} cannot be read ({type(e).__name__}); it is corrupt, resume from another run") from None
    if not isinstance(state, dict):
        raise AvaeError(f"checkpoint {path} holds a {type(state).__name__}, not a checkpoint; put back this run's file "
                        "or start a new run")
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing or not isinstance(state["model"], dict):
        raise AvaeError(f"checkpoint {path} lacks {', '.join(missing) or 'model weights'}; it is not a checkpoint of "
                        "`avae train`: put back this run's file or start a new run")
    return state


def load_weights(model: Model, run_dir: Path, which: str = "last") -> dict:
    """A checkpoint's weights loaded into `model`: finite, and of this model's shapes; returns the
    whole checkpoint."""
    path = checkpoint_path(run_dir, which)
    state = load_checkpoint(path)
    bad = non_finite(state["model"])
    if bad:
        raise AvaeError(f"checkpoint {path} holds non-finite weights ({bad[0]}): the run diverged; "
                        f"{NEW_RUN} and a lower train.lr")
    try:
        model.load_state_dict(state["model"])
        model.load_extra_state(state["model_extra"])
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise AvaeError(f"checkpoint {path} does not fit this run's model ({first_line(e)}); "
                        "it was copied from another run: put back this run's file or start a new run") from None
    return state


def non_finite(state_dict: dict) -> list[str]:
    """Names of the floating-point tensors holding NaN or inf."""
    return [name for name, value in state_dict.items()
            if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all())]


# --- the metrics log --------------------------------------------------------------------------
def append_metrics(run_dir: Path, record: dict) -> None:
    with os.fdopen(_open_no_follow(run_dir / METRICS, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "a") as f:
        f.write(json.dumps(record) + "\n")


def read_metrics(run_dir: Path) -> list[dict]:
    """The epochs of metrics.jsonl; a torn last line (a kill in mid-write) is left out, any other damage named."""
    path = run_dir / METRICS
    if not path.is_file():
        return []
    text = path.read_text(errors="replace")
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
                raise ValueError("no epoch number")
        except ValueError as e:
            if number == len(lines) and not text.endswith("\n"):
                break  # torn by a kill: the checkpoint's epochs are re-run
            raise AvaeError(f"{path} is damaged at line {number} ({first_line(e)}); delete that line and resume") from None
        records.append(record)
    return records


def truncate_metrics(run_dir: Path, epochs_done: int) -> None:
    """Drop lines of epochs the checkpoint does not hold (a kill between log and save), and a torn last line."""
    path = run_dir / METRICS
    if path.is_file():
        kept = [r for r in read_metrics(run_dir) if r["epoch"] <= epochs_done]
        save_file(lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in kept)), path)


# --- files ---------------------------------------------------------------------------------------
def subfolder(parent: Path, name: str) -> Path:
    """PARENT/NAME as a real folder (created if missing); a link there is refused, so writes inside
    a run directory stay inside it."""
    path = parent / name
    if path.is_symlink():
        raise AvaeError(f"{path} is a symbolic link; {LINK_ADVICE}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _open_no_follow(path: Path, flags: int) -> int:
    """os.open that refuses a symbolic link at `path` in one line."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW, 0o644)
    except OSError:
        if path.is_symlink():
            raise AvaeError(f"{path} is a symbolic link; {LINK_ADVICE}") from None
        raise


def write_json(path: Path, obj) -> None:
    save_file(lambda tmp: tmp.write_text(json.dumps(obj, indent=1)), path)


def first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
