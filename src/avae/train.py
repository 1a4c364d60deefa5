"""The one training loop. Models plug in through the hooks of `models.base.Model`.

Run directory:
  config.yaml        the resolved configuration
  run.json           status (running/finished), data spec, versions
  metrics.jsonl      one line per epoch
  checkpoints/       last.pt and best.pt, each written atomically
  figures/epoch_NNN/ samples, reconstructions, latent scatter matrix, ‖z‖² histogram
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import platform
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from . import __version__, config as config_mod, hardware, report
from .config import TrainConfig
from .data import ArrayImages, Dataset, ImageSet, Subset, check_unchanged, load_dataset, to_float
from .distributed import Dist, from_environment
from .errors import AvaeError
from .models import DataSpec, Model, build_model


# --- building a run -------------------------------------------------------------------------
def prepare_data(cfg: dict) -> Dataset:
    """The dataset of a config, with the training and validation sets cut to size if asked."""
    dc = cfg["data"]
    options = dc.get("options") or {}
    data = load_dataset(dc["name"], root=dc.get("root"), seed=dc.get("split_seed", 0), **options)
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
    data.train, data.val = _held(data.train), _held(data.val)
    return data


HELD_BYTES = 1 << 29  # a set cut to at most this size is read (or rendered) once and kept in memory


def _held(images: ImageSet) -> ImageSet:
    """A cut set as one array: every epoch reads it again, and rendered sets are slow to read."""
    if not isinstance(images, Subset) or len(images) * math.prod(images.shape) > HELD_BYTES:
        return images
    return ArrayImages(images.images(np.arange(len(images))).numpy())


def data_spec(data: Dataset) -> DataSpec:
    return DataSpec(
        shape=tuple(data.shape),
        likelihood=data.likelihood,
        value_range=tuple(data.value_range),
        train_size=len(data.train),
        has_factors=data.factors is not None,
    )


def build(cfg: dict, spec: DataSpec) -> Model:
    torch.manual_seed(cfg["train"].get("seed", 0))  # the initial weights depend on the seed alone
    return build_model(cfg["model"], spec)


NEW_RUN = "start a new run with `avae train --out NEW_DIR`"


def read_run(run_dir: Path) -> tuple[dict, DataSpec]:
    """The config and data spec of an existing run directory (checked: a damaged file is named)."""
    cfg_path, info_path = run_dir / "config.yaml", run_dir / "run.json"
    if not cfg_path.is_file() or not info_path.is_file():
        raise AvaeError(f"{run_dir} is not a run directory (no config.yaml/run.json); give a folder made by `avae train`")
    try:
        cfg = config_mod.validate(config_mod.load_yaml(cfg_path.read_text()))
    except (ValueError, config_mod.yaml.YAMLError, AvaeError) as e:
        raise AvaeError(f"{cfg_path} is damaged ({_first_line(e)}); {NEW_RUN}") from None
    return cfg, _data_spec(run_info(run_dir), info_path)


def run_info(run_dir: Path) -> dict:
    """run.json: status, data spec, data provenance, versions."""
    path = run_dir / "run.json"
    try:
        info = json.loads(path.read_text())
    except ValueError as e:
        raise AvaeError(f"{path} is damaged (not JSON: {_first_line(e)}); {NEW_RUN}") from None
    if not isinstance(info, dict):
        raise AvaeError(f"{path} is damaged (it holds a {type(info).__name__}, not a mapping); {NEW_RUN}")
    return info


def _data_spec(info: dict, path: Path) -> DataSpec:
    spec = info.get("data_spec")
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


def recorded_data(run_dir: Path) -> dict:
    """The description of its data that a run recorded when it started (run.json's dataset_info)."""
    return run_info(run_dir).get("dataset_info", {})


def load_weights(model: Model, run_dir: Path, which: str = "last") -> dict:
    """A checkpoint's weights loaded into `model`: finite, and of this model's shapes."""
    path = run_dir / "checkpoints" / f"{which}.pt"
    state = load_checkpoint(path)
    bad = [name for name, value in state["model"].items() if torch.is_tensor(value) and not _finite(value)]
    if bad:
        raise AvaeError(f"checkpoint {path} holds non-finite weights ({bad[0]}): the run diverged; "
                        f"{NEW_RUN} and a lower train.lr")
    try:
        model.load_state_dict(state["model"])
        model.load_extra_state(state["model_extra"])
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise AvaeError(f"checkpoint {path} does not fit this run's model ({_first_line(e)}); "
                        "it was copied from another run: put back this run's file or start a new run") from None
    return state


def _finite(tensor: torch.Tensor) -> bool:
    return not tensor.is_floating_point() or bool(torch.isfinite(tensor).all())


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


# --- run states: one writer, failed runs marked -------------------------------------------------
@contextmanager
def lock(run_dir: Path):
    """Hold RUN_DIR/.lock while training: a second trainer is refused, and the kernel releases the
    lock when its process dies (even by SIGKILL), so a killed run never stays locked."""
    handle = open(run_dir / ".lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise AvaeError(f"{run_dir} is being trained by another process (pid {holder}); wait for it to end, "
                        "or stop it and resume") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()


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


def _may_start_again(run_dir: Path) -> bool:
    """A run that ended (failed, or killed) before its first checkpoint holds nothing to resume."""
    try:
        status = run_info(run_dir).get("status")
    except AvaeError:
        return False
    return status in ("failed", "running") and not (run_dir / "checkpoints" / "last.pt").exists()


def _clear(run_dir: Path) -> None:
    import shutil

    for name in ("config.yaml", "run.json", "metrics.jsonl"):
        (run_dir / name).unlink(missing_ok=True)
    for name in ("checkpoints", "figures"):
        shutil.rmtree(run_dir / name, ignore_errors=True)


def mark_failed(run_dir: Path, reason: str) -> None:
    write_json(run_dir / "run.json", {**run_info(run_dir), "status": "failed", "error": reason})


def _training(trainer: "Trainer") -> None:
    """Fit, and mark the run failed (keeping its last good checkpoint) if training raises."""
    try:
        trainer.fit()
    except KeyboardInterrupt:
        raise  # an interrupted run resumes
    except Exception as e:
        if trainer.dist.is_main:
            mark_failed(trainer.run_dir, _first_line(e))
        raise


# --- checkpoints ------------------------------------------------------------------------------
def atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


CHECKPOINT_KEYS = ("model", "model_extra", "optimizer", "scheduler", "torch_rng", "epoch", "step", "sums",
                   "train_seconds", "best")


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


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


# --- the loop -----------------------------------------------------------------------------------
class Trainer:
    """Trains a model; under torchrun each rank takes its share of every global batch."""

    def __init__(self, cfg: dict, run_dir: Path, data: Dataset, model: Model, dist: Dist | None = None):
        self.cfg, self.run_dir, self.data, self.model = cfg, Path(run_dir), data, model
        self.dist = dist or Dist()
        self.device = _device(TrainConfig.from_dict(cfg["train"]).device, self.dist)
        self.auto = self._resolve_auto()
        self.tc = TrainConfig.from_dict(cfg["train"])
        self.seed = self.tc.seed
        torch.set_num_threads(self.tc.threads)
        if self.dist.enabled and self.tc.batch_size < 2 * self.dist.world:
            raise AvaeError(f"train.batch_size {self.tc.batch_size} is too small for {self.dist.world} ranks")
        self.memory_format = torch.channels_last if self.tc.channels_last else torch.contiguous_format
        if self.dist.enabled and self.device.type == "cuda":  # global batch statistics, as in one process
            nn.SyncBatchNorm.convert_sync_batchnorm(model)  # (CPU ranks keep per-rank BatchNorm statistics)
        self.model.to(self.device, memory_format=self.memory_format)
        params = list(model.encoder.parameters()) + list(model.decoder.parameters())
        self.optimizer = torch.optim.Adam(params, lr=self.tc.lr, eps=1e-7)  # Keras' epsilon, as the paper
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, factor=self.tc.lr_factor, patience=self.tc.lr_patience, threshold=self.tc.lr_threshold
        )
        self.forward = self._wrap(params) if self.dist.enabled else model
        self.epoch, self.step, self.best = 0, 0, math.inf
        self._saved_epoch = None  # the epochs held by the last checkpoint written or resumed from
        self.sums: dict[str, float] = {}  # image-weighted sums of the epoch's training losses
        self.train_seconds = 0.0

    def _resolve_auto(self) -> dict:
        """Settings left at `auto` made concrete in the config: decided on rank 0 for this
        machine, the same on every rank. Returns the record of the choice for run.json."""
        choices = self.dist.broadcast(hardware.fastest(self.model, self.device) if self.dist.is_main else None)
        chosen = hardware.apply(self.cfg, self.model, choices)
        facts = hardware.machine()
        if chosen and self.dist.is_main and self.cfg["train"].get("progress", True):
            settings = ", ".join(f"{k}={str(v).lower()}" for k, v in chosen.items())
            tqdm.write(f"auto: {settings} ({facts['cpu']}, {facts['capability']}; {choices['basis']})")
        return {"chosen": chosen, "basis": choices["basis"], "seconds": choices["seconds"], "machine": facts}

    def _wrap(self, autoencoder_params):
        """DistributedDataParallel over the encoder and decoder; other parameters (a discriminator)
        are left to the model, which averages their gradients with `dist.average_gradients`."""
        keep = {id(p) for p in autoencoder_params}
        ignored = [name for name, p in self.model.named_parameters() if id(p) not in keep]
        DDP._set_params_and_buffers_to_ignore_for_model(self.model, ignored)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(self.model, device_ids=ids)

    # helpers the models use
    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images → the model's float input on the device."""
        x = to_float(images.to(self.device), self.data.value_range)
        return x.contiguous(memory_format=self.memory_format)

    @torch.no_grad()
    def encode(self, images, indices, batch: int = 1000) -> torch.Tensor:
        """Codes of images[indices] in inference mode (CPU float32)."""
        was_training = self.model.training
        self.model.eval()
        codes = [
            self.model.encode(self.prepare(images.images(indices[i : i + batch]))).float().cpu()
            for i in range(0, len(indices), batch)
        ]
        self.model.train(was_training)
        return torch.cat(codes)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.tc.precision == "bfloat16")

    # the run
    def fit(self) -> None:
        if self.dist.is_main:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        while self.epoch < self.tc.epochs:
            self._train_epoch()
            self._end_epoch()
        if self.dist.is_main:
            info = json.loads((self.run_dir / "run.json").read_text())
            write_json(self.run_dir / "run.json", {**info, "status": "finished", "epochs_done": self.epoch})

    def _diverged(self, step: int, what: str) -> AvaeError:
        """The error that stops a diverging run; nothing non-finite has been written."""
        kept = (f"its last good checkpoint (epoch {self._saved_epoch}) is kept" if self._saved_epoch is not None
                else "no checkpoint was written")
        return AvaeError(f"training diverged at epoch {self.epoch + 1}, step {step + 1}: {what}; likely "
                         f"train.lr={self.tc.lr:g} is too high{self.model.divergence_hint}; the run is marked failed "
                         f"and {kept}: start it again with a lower train.lr")

    def _train_epoch(self) -> None:
        model, tc = self.model, self.tc
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.data.train))
        sgd = model.on_epoch_start(self, order)
        batches = [sgd[i : i + tc.batch_size] for i in range(0, len(sgd), tc.batch_size)]
        batches = [b for b in batches if len(b) >= 2 * self.dist.world]  # BatchNorm needs two images a rank
        model.train()
        resumed_at, start = self.step, time.perf_counter() - self.train_seconds
        self._last_save = time.monotonic()
        bar = tqdm(range(self.step, len(batches)), desc=f"epoch {self.epoch + 1}/{tc.epochs}",
                   disable=not (tc.progress and self.dist.is_main), leave=False, dynamic_ncols=True)
        for step in bar:
            if step > resumed_at and step % model.checkpoint_alignment == 0 and self._checkpoint_due():
                self.step, self.train_seconds = step, time.perf_counter() - start
                self._save("last")
            model.on_step_start(self, step)
            batch = batches[step]
            shard = self.dist.shard(batch)
            x = self.prepare(self.data.train.images(shard))
            with self.autocast():
                losses = self.forward(x)
            if not torch.isfinite(losses["loss"].detach()).all():
                raise self._diverged(step, f"the training loss is {float(losses['loss'].detach())}")
            # DDP averages gradients over ranks; weighting by the shard's share of the batch
            # makes that the gradient of the global batch mean, as in one process.
            weight = len(shard) * self.dist.world / len(batch)
            self.optimizer.zero_grad(set_to_none=True)
            (losses["loss"] * weight).backward()
            self.optimizer.step()
            model.after_step(self, x)
            for key, value in losses.items():
                self.sums[key] = self.sums.get(key, 0.0) + float(value.detach()) * len(shard)
            self.sums["steps"] = self.sums.get("steps", 0) + 1 / self.dist.world
            self.sums["images"] = self.sums.get("images", 0) + len(shard)
            if step % 10 == 0:
                bar.set_postfix({k: f"{float(v.detach()):.4g}" for k, v in losses.items()})
        bar.close()
        self.train_seconds = time.perf_counter() - start

    def _checkpoint_due(self) -> bool:
        """Rank 0's clock decides, so every rank takes part in the save's reduction."""
        due = time.monotonic() - self._last_save > 60 * self.tc.checkpoint_minutes
        return bool(self.dist.broadcast(due))

    @torch.no_grad()
    def validate(self) -> dict:
        """Batch-mean validation losses over the whole validation set (summed over ranks)."""
        model, tc = self.model, self.tc
        model.eval()
        totals, codes, kept = {}, [], 0
        mine = self.dist.shard(np.arange(len(self.data.val)))
        for i in range(0, len(mine), tc.val_batch_size):
            idx = mine[i : i + tc.val_batch_size]
            with self.autocast():
                out = model.validation_loss(self.prepare(self.data.val.images(idx)))
            z = out.pop("z")
            if kept < tc.figure_points:
                codes.append(z.float().cpu())
                kept += len(z)
            for key, value in out.items():
                totals[key] = totals.get(key, 0.0) + float(value) * len(idx)
            totals["n"] = totals.get("n", 0) + len(idx)
        model.train()
        totals = self.dist.sum(totals, self.device)
        n = totals.pop("n")
        val = {key: value / n for key, value in totals.items()}
        val["codes"] = torch.cat(codes)[: tc.figure_points]
        return val

    def _end_epoch(self) -> None:
        start = time.perf_counter()
        val = self.validate()
        if not all(math.isfinite(val[key]) for key in ("loss", "objective")):
            raise self._diverged(self.step, f"the validation loss is {val['loss']}")
        self.model.on_validation_end(self, val)
        self.scheduler.step(val["objective"])
        val_seconds = time.perf_counter() - start
        sums = self.dist.sum(self.sums, self.device)
        images = max(sums.get("images", 0), 1)
        record = {
            "epoch": self.epoch + 1,
            **{f"train_{k}": v / images for k, v in sums.items() if k not in ("steps", "images")},
            **{f"val_{k}": v for k, v in val.items() if k != "codes"},
            "lr": self.optimizer.param_groups[0]["lr"],
            **self.model.epoch_summary(),
            "train_s": self.train_seconds,
            "val_s": val_seconds,
            "epoch_s": self.train_seconds + val_seconds,
            "steps": round(sums.get("steps", 0)),
            "images_per_s": sums.get("images", 0) / max(self.train_seconds, 1e-9),
            "ranks": self.dist.world,
        }
        improved = val["loss"] < self.best
        self.best = min(self.best, val["loss"])
        if self.dist.is_main:
            every = self.tc.figures_every
            if every and ((self.epoch + 1) % every == 0 or self.epoch + 1 == self.tc.epochs):
                self.figures(self.run_dir / "figures" / f"epoch_{self.epoch + 1:03d}", val["codes"])
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        self.epoch, self.step, self.sums, self.train_seconds = self.epoch + 1, 0, {}, 0.0
        self._save("last")
        if improved:
            self._save("best")
        if self.tc.progress and self.dist.is_main:
            tqdm.write(_summary_line(record))

    def figures(self, folder: Path, codes: torch.Tensor) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        model, vr = self.model, self.data.value_range
        model.eval()
        with torch.no_grad():
            gen = torch.Generator().manual_seed(self.seed)  # the same codes every epoch
            report.save_samples(folder / "samples.png", report.to_uint8(model.sample(64, gen).float().cpu(), vr),
                                model.sampler)
            originals = self.data.val.images(np.arange(min(32, len(self.data.val))))
            recon = model.decode(model.encode(self.prepare(originals))).float().cpu()
            report.save_reconstructions(folder / "reconstructions.png", originals.numpy(), report.to_uint8(recon, vr),
                                        "validation")
        model.train()
        report.save_latent_figures(folder, codes.numpy(), model.latent_variance, "validation")

    # --- checkpoints ------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def _save(self, which: str) -> None:
        """Rank 0 writes; every rank must call (the epoch's partial sums are reduced first)."""
        sums = self.dist.sum(self.sums, self.device)
        if not self.dist.is_main:
            return
        bad = [name for name, value in self.model.state_dict().items() if not _finite(value)]
        if bad:
            raise self._diverged(max(self.step - 1, 0), f"the weights became non-finite ({bad[0]})")
        state = {
            "model": self.model.state_dict(),
            "model_extra": self.model.extra_state(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "epoch": self.epoch,
            "step": self.step,
            "sums": sums,
            "train_seconds": self.train_seconds,
            "best": self.best,
        }
        atomic_save(state, self.checkpoint_dir / f"{which}.pt")
        self._last_save = time.monotonic()
        self._saved_epoch = self.epoch

    def resume(self) -> None:
        """Continue from checkpoints/last.pt (a fresh start if the run died before saving).

        A checkpoint holds no per-rank state, so it resumes under any number of ranks.
        """
        path = self.checkpoint_dir / "last.pt"
        if not path.is_file():
            return
        state = load_weights(self.model, self.run_dir, "last")
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["torch_rng"])
        except (RuntimeError, KeyError, TypeError, ValueError) as e:
            raise AvaeError(f"checkpoint {path} does not fit this run's optimizer ({_first_line(e)}); "
                            "put back this run's file or start a new run") from None
        self.epoch, self.step, self.best = state["epoch"], state["step"], state["best"]
        self._saved_epoch = self.epoch
        self.sums = dict(state["sums"]) if self.dist.is_main else {}  # the saved sums are already global
        self.train_seconds = state["train_seconds"]
        if self.dist.enabled:
            _seed_rank(self.seed, self.dist.rank, self.epoch, self.step)
        if self.dist.is_main:
            _truncate_metrics(self.run_dir / "metrics.jsonl", self.epoch)

    def check_metrics_log(self) -> None:
        """Fail before training if the metrics log is damaged beyond a torn last line."""
        _metric_records(self.run_dir / "metrics.jsonl")


def _seed_rank(seed: int, rank: int, *position: int) -> None:
    """Distinct torch randomness per rank (e.g. VAE noise), reproducible from the position."""
    torch.manual_seed(int(np.random.SeedSequence([seed, rank, *position]).generate_state(1)[0]))


def _truncate_metrics(path: Path, epochs_done: int) -> None:
    """Drop lines of epochs the checkpoint does not hold (a kill between log and save), and a torn last line."""
    if not path.is_file():
        return
    kept = [r for r in _metric_records(path) if r["epoch"] <= epochs_done]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))


def _metric_records(path: Path) -> list[dict]:
    """The epochs of metrics.jsonl; a torn last line (a kill in mid-write) is left out, any other damage named."""
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
            raise AvaeError(f"{path} is damaged at line {number} ({_first_line(e)}); delete that line and resume") from None
        records.append(record)
    return records


def _summary_line(r: dict) -> str:
    parts = [f"epoch {r['epoch']}", f"train loss {r.get('train_loss', float('nan')):.4g}",
             f"val recon {r.get('val_recon', float('nan')):.4g}"]
    if "sigma" in r:
        parts.append(f"σ {r['sigma']:.4g}")
    parts.append(f"{r['epoch_s']:.1f} s")
    return " | ".join(parts)


def _device(name: str, dist: Dist) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and dist.enabled:
        return torch.device("cuda", dist.local_rank)
    try:
        device = torch.device(name)
    except RuntimeError:
        raise AvaeError(f"train.device '{name}' is not a device; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AvaeError("train.device asks for cuda but no GPU is available; use train.device=cpu")
    return device


# --- entry points -------------------------------------------------------------------------------
def start(cfg: dict, run_dir: Path) -> Path:
    """Validate everything, then create the run directory (rank 0) and train."""
    dist = from_environment()
    try:
        return _start(cfg, Path(run_dir), dist)
    finally:
        dist.close()  # after _start has returned, so no DistributedDataParallel outlives the group


def _start(cfg: dict, run_dir: Path, dist: Dist) -> Path:
    data = prepare_data(cfg)
    spec = data_spec(data)
    model = build(cfg, spec)
    run_dir = Path(dist.broadcast(str(run_dir)))  # one folder, even if ranks' clocks named it differently
    trainer = Trainer(cfg, run_dir, data, model, dist)  # checks the device, makes `auto` settings concrete
    with lock(make_folder(run_dir)) if dist.is_main else nullcontext():
        if dist.is_main:
            _create(run_dir, cfg, spec, data.info, trainer.auto)
        dist.barrier()
        if dist.enabled:
            _seed_rank(cfg["train"].get("seed", 0), dist.rank)
        _training(trainer)
    return run_dir


def _create(run_dir: Path, cfg: dict, spec: DataSpec, dataset_info: dict, auto: dict) -> None:
    """config.yaml and a 'running' run.json; a run that ended before its first checkpoint is started again."""
    if (run_dir / "run.json").exists():
        if not _may_start_again(run_dir):
            raise AvaeError(f"{run_dir} already holds a run; resume it with `avae train --resume {run_dir}` or pick --out")
        _clear(run_dir)
    (run_dir / "config.yaml").write_text(config_mod.dump(cfg))
    write_json(run_dir / "run.json", {
        "status": "running", "data_spec": asdict(spec), "avae": __version__, "torch": torch.__version__,
        "python": platform.python_version(), "dataset_info": dataset_info, "auto": auto,
    })


def resume(run_dir: Path) -> Path:
    dist = from_environment()
    try:
        return _resume(Path(run_dir), dist)
    finally:
        dist.close()


def _resume(run_dir: Path, dist: Dist) -> Path:
    cfg, _ = read_run(run_dir)
    data = prepare_data(cfg)
    check_unchanged(data, recorded_data(run_dir))
    model = build(cfg, data_spec(data))
    trainer = Trainer(cfg, run_dir, data, model, dist)
    with lock(run_dir) if dist.is_main else nullcontext():
        trainer.check_metrics_log()
        trainer.resume()
        _training(trainer)
    return run_dir
