"""The one training loop. Models plug in through the hooks of `models.base.Model`, which get a
`TrainContext`; what training reports goes through `avae.callbacks`; the run directory is read
and written through `avae.run`."""
from __future__ import annotations

import math
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from . import callbacks as reporting, config as config_mod, hardware, run, user_nets
from .callbacks import Callback, EpochEnd, RunInfo
from .config import Config
from .data import Dataset, ImageSet, check_unchanged, load_data, to_float
from .data.given import NAME as GIVEN, GivenData
from .distributed import Dist, from_environment
from .errors import AvaeError
from .models import Model, TrainContext, data_spec, seeded_model


# --- the loop -----------------------------------------------------------------------------------
class Trainer:
    """Trains a model; under torchrun each rank takes its share of every global batch."""

    def __init__(self, cfg: Config, run_dir: Path, data: Dataset, model: Model, dist: Dist | None = None,
                 callbacks: list[Callback] | None = None):
        self.run_dir, self.data, self.model = Path(run_dir), data, model
        self.dist = dist or Dist()
        self.device = _device(cfg.train.device, self.dist)
        # the config with its `auto` settings made concrete (what config.yaml records), and the record of the choice
        self.cfg, self.auto = self._resolve_auto(cfg, max(1, cfg.train.batch_size // self.dist.world))
        self.settings = self.cfg.train
        self.seed = self.settings.seed
        self.threads = self._set_threads()
        if self.settings.threads and self.dist.is_main and (warning := hardware.threads_warning(self.settings.threads)):
            tqdm.write(f"warning: {warning}", file=sys.stderr)
        if self.dist.enabled and self.settings.batch_size < 2 * self.dist.world:
            raise AvaeError(f"train.batch_size {self.settings.batch_size} is too small for {self.dist.world} ranks")
        self.memory_format = torch.channels_last if self.settings.channels_last else torch.contiguous_format
        if self.dist.enabled and self.device.type == "cuda":  # global batch statistics, as in one process
            nn.SyncBatchNorm.convert_sync_batchnorm(model)  # (CPU ranks keep per-rank BatchNorm statistics)
        self.model.to(self.device, memory_format=self.memory_format)
        params = list(model.encoder.parameters()) + list(model.decoder.parameters())
        self.optimizer = torch.optim.Adam(params, lr=self.settings.lr, eps=1e-7)  # Keras' epsilon, as the paper
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, factor=self.settings.lr_factor, patience=self.settings.lr_patience,
            threshold=self.settings.lr_threshold,
        )
        self.forward = self._wrap(params) if self.dist.enabled else model
        self.epoch, self.step, self.best = 0, 0, math.inf
        self._saved_epoch = None  # the epochs held by the last checkpoint written or resumed from
        self.sums: dict[str, float] = {}  # image-weighted sums of the epoch's training losses
        self.train_seconds = 0.0
        self.context = TrainContext(train_images=data.train, device=self.device, prepare=self.prepare,
                                    encode_images=self.encode_images, seed=self.seed, dist=self.dist)
        if callbacks is None:
            callbacks = reporting.from_settings(self.settings) if self.dist.is_main else []
        self.callbacks = callbacks
        self.info = RunInfo(run_dir=self.run_dir, config=self.cfg, settings=self.settings, model=model,
                            val_images=data.val, value_range=data.value_range, prepare=self.prepare, seed=self.seed)

    def _resolve_auto(self, cfg: Config, rank_batch: int) -> tuple[Config, dict]:
        """The config with its settings left at `auto` made concrete: decided on rank 0 for this
        machine and each rank's batch size, the same on every rank; and the record of the choice
        for run.json."""
        progress = cfg.train.progress
        choices = self.dist.broadcast(hardware.fastest(self.model, self.device, rank_batch, progress)
                                      if self.dist.is_main else None)
        cfg, chosen = hardware.apply(cfg, self.model, choices)
        facts = hardware.machine()
        if chosen and self.dist.is_main and progress:
            settings = ", ".join(f"{k}={str(v).lower()}" for k, v in chosen.items())
            tqdm.write(f"auto: {settings} ({facts['cpu']}, {facts['capability']}; {choices['basis']})")
        return cfg, {"chosen": chosen, "basis": choices["basis"], "seconds": choices["seconds"], "machine": facts}

    def _set_threads(self) -> int:
        """train.threads, or under `auto` the cores other work leaves free now (read every epoch)."""
        threads = self.settings.threads or hardware.threads()
        torch.set_num_threads(threads)
        return threads

    def _wrap(self, autoencoder_params):
        """DistributedDataParallel over the encoder and decoder; other parameters (a discriminator)
        are left to the model, which averages their gradients with `dist.average_gradients`."""
        keep = {id(p) for p in autoencoder_params}
        ignored = [name for name, p in self.model.named_parameters() if id(p) not in keep]
        DDP._set_params_and_buffers_to_ignore_for_model(self.model, ignored)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(self.model, device_ids=ids)

    # helpers the models use (through the context)
    def prepare(self, images: torch.Tensor, memory_format: torch.memory_format | None = None) -> torch.Tensor:
        """uint8 images → the model's float input on the device, in the training layout unless told."""
        x = to_float(images.to(self.device), self.data.value_range)
        return x.contiguous(memory_format=memory_format or self.memory_format)

    @torch.no_grad()
    def encode_images(self, images: ImageSet, indices: np.ndarray, batch: int = 1000) -> torch.Tensor:
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
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.settings.precision == "bfloat16")

    # the run
    def fit(self) -> None:
        """Train the remaining epochs; a run that raises is marked failed, its last good checkpoint kept."""
        try:
            self._report("on_train_start")
            while self.epoch < self.settings.epochs:
                self.context.epoch = self.epoch
                self._train_epoch()
                self._end_epoch()
            if self.dist.is_main:
                run.mark_finished(self.run_dir, self.epoch)
            self._report("on_train_end")
        except KeyboardInterrupt as e:
            if self.dist.is_main:
                run.mark_interrupted(self.run_dir)
            self._report("on_train_stopped", e)
            e.run_dir = self.run_dir  # for the command's advice: which run to resume
            raise  # an interrupted run resumes
        except Exception as e:
            if self.dist.is_main:
                run.mark_failed(self.run_dir, run.first_line(e))
            self._report("on_train_stopped", e)
            raise

    def _report(self, event: str, *args) -> None:
        for callback in self.callbacks:  # rank 0's; the other ranks have none
            getattr(callback, event)(self.info, *args)

    def _diverged(self, step: int, what: str) -> AvaeError:
        """The error that stops a diverging run; nothing non-finite has been written."""
        kept = (f"its last good checkpoint (epoch {self._saved_epoch}) is kept" if self._saved_epoch is not None
                else "no checkpoint was written")
        return AvaeError(f"training diverged at epoch {self.epoch + 1}, step {step + 1}: {what}; likely "
                         f"train.lr={self.settings.lr:g} is too high{self.model.divergence_hint}; the run is marked "
                         f"failed and {kept}: start it again with a lower train.lr")

    def _train_epoch(self) -> None:
        model, settings = self.model, self.settings
        self.threads = self._set_threads()
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.data.train))
        self._seed_position(EPOCH_START)
        sgd = model.on_epoch_start(self.context, order)
        batches = [sgd[i : i + settings.batch_size] for i in range(0, len(sgd), settings.batch_size)]
        batches = [b for b in batches if len(b) >= 2 * self.dist.world]  # BatchNorm needs two images a rank
        model.train()
        resumed_at, start = self.step, time.perf_counter() - self.train_seconds
        self._last_save = time.monotonic()
        self._report("on_epoch_start", self.epoch + 1, len(batches), self.step)
        for step in range(self.step, len(batches)):
            if step > resumed_at and step % model.checkpoint_alignment == 0 and self._checkpoint_due():
                self.step, self.train_seconds = step, time.perf_counter() - start
                self._save("last")
            self._seed_position(step)
            model.on_step_start(self.context, step)
            batch = batches[step]
            shard = self.dist.shard(batch)
            x = self.prepare(self.data.train.images(shard))
            with self.autocast():
                losses = self.forward(x)
            finite = bool(torch.isfinite(losses["loss"].detach()).all())
            if self.dist.any(not finite, self.device):  # one rank's non-finite loss stops every rank
                raise self._diverged(step, f"the training loss is {float(losses['loss'].detach())}" if not finite
                                     else "the training loss is non-finite on another rank")
            # DDP averages gradients over ranks; weighting by the shard's share of the batch
            # makes that the gradient of the global batch mean, as in one process.
            weight = len(shard) * self.dist.world / len(batch)
            self.optimizer.zero_grad(set_to_none=True)
            (losses["loss"] * weight).backward()
            self.optimizer.step()
            model.after_step(self.context, x, losses)
            scalars = {key: value for key, value in losses.items() if key != "z"}
            for key, value in scalars.items():
                self.sums[key] = self.sums.get(key, 0.0) + float(value.detach()) * len(shard)
            self.sums["steps"] = self.sums.get("steps", 0) + 1 / self.dist.world
            self.sums["images"] = self.sums.get("images", 0) + len(shard)
            self._report("on_step_end", step, scalars)
        self.train_seconds = time.perf_counter() - start

    def _seed_position(self, step: int) -> None:
        """Under torchrun, seed this rank's torch randomness (VAE noise, prior draws) from its rank and
        the position in the run, so that a run resumed from any checkpoint draws what an uninterrupted
        one drew (the checkpoint holds rank 0's stream only). Validation and the epoch's end draw on
        from the last step's. One process keeps torch's global stream, which checkpoints save."""
        if self.dist.enabled:
            _seed_rank(self.seed, self.dist.rank, self.epoch, step)

    def _checkpoint_due(self) -> bool:
        """Rank 0's clock decides, so every rank takes part in the save's reduction."""
        due = time.monotonic() - self._last_save > 60 * self.settings.checkpoint_minutes
        return bool(self.dist.broadcast(due))

    @torch.no_grad()
    def validate(self) -> dict:
        """Batch-mean validation losses over the whole validation set (summed over ranks)."""
        model, settings = self.model, self.settings
        model.eval()
        totals, codes, kept = {}, [], 0
        mine = self.dist.shard(np.arange(len(self.data.val)))
        for i in range(0, len(mine), settings.val_batch_size):
            idx = mine[i : i + settings.val_batch_size]
            with self.autocast():
                out = model.validation_loss(self.prepare(self.data.val.images(idx)))
            z = out.pop("z")
            if kept < settings.figure_points:
                codes.append(z.float().cpu())
                kept += len(z)
            for key, value in out.items():
                totals[key] = totals.get(key, 0.0) + float(value) * len(idx)
            totals["n"] = totals.get("n", 0) + len(idx)
        model.train()
        totals = self.dist.sum(totals, self.device)
        n = totals.pop("n")
        val = {key: value / n for key, value in totals.items()}
        val["codes"] = torch.cat(codes)[: settings.figure_points]
        return val

    def _end_epoch(self) -> None:
        start = time.perf_counter()
        val = self.validate()
        if not all(math.isfinite(val[key]) for key in ("loss", "objective")):
            raise self._diverged(self.step, f"the validation loss is {val['loss']}")
        self.model.on_validation_end(self.context, val)
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
            "threads": self.threads,
        }
        improved = val["loss"] < self.best
        self.best = min(self.best, val["loss"])
        self._report("on_epoch_end", EpochEnd(self.epoch + 1, record, val["codes"]))
        self.epoch, self.step, self.sums, self.train_seconds = self.epoch + 1, 0, {}, 0.0
        self._save("last")
        if improved:
            self._save("best")

    # --- checkpoints ------------------------------------------------------------------------
    def _save(self, which: str) -> None:
        """Rank 0 writes; every rank must call (the epoch's partial sums are reduced first)."""
        sums = self.dist.sum(self.sums, self.device)
        bad = run.non_finite(self.model.state_dict())
        if self.dist.any(bool(bad), self.device):  # every rank stops (CPU ranks' BatchNorm statistics differ)
            raise self._diverged(max(self.step - 1, 0), f"the weights became non-finite ({bad[0]})" if bad
                                 else "the weights became non-finite on another rank")
        if not self.dist.is_main:
            return
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
        run.save_checkpoint(state, self.run_dir, which)
        self._last_save = time.monotonic()
        self._saved_epoch = self.epoch

    def resume(self) -> None:
        """Continue from checkpoints/last.pt (`run.check_resumable` has said it is there).

        A checkpoint holds no per-rank state, so it resumes under any number of ranks.
        """
        run.read_metrics(self.run_dir)  # a log damaged beyond a torn last line fails before training
        path = run.checkpoint_path(self.run_dir, "last")
        state = run.load_weights(self.model, self.run_dir, "last")
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["torch_rng"])
        except (RuntimeError, KeyError, TypeError, ValueError) as e:
            raise AvaeError(f"checkpoint {path} does not fit this run's optimizer ({run.first_line(e)}); "
                            "put back this run's file or start a new run") from None
        self.epoch, self.step, self.best = state["epoch"], state["step"], state["best"]
        self._saved_epoch = self.epoch
        self.sums = dict(state["sums"]) if self.dist.is_main else {}  # the saved sums are already global
        self.train_seconds = state["train_seconds"]
        if self.dist.is_main:
            run.truncate_metrics(self.run_dir, self.epoch)
            if self.settings.progress:
                tqdm.write(f"resuming {self.run_dir} at epoch {self.epoch + 1}, step {self.step} "
                           f"(of {self.settings.epochs} epochs)")


EPOCH_START = 2**32 - 1  # the position of an epoch's start (before its first step): a step no epoch reaches


def _seed_rank(seed: int, rank: int, *position: int) -> None:
    """Distinct torch randomness per rank (e.g. VAE noise), reproducible from the position."""
    torch.manual_seed(int(np.random.SeedSequence([seed, rank, *position]).generate_state(1)[0]))


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
def default_run_dir(cfg: Config) -> Path:
    return Path(f"runs/{cfg.data.name}-{cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}")


def train(config: Config | dict | str | Path | None = None, out: str | Path | None = None, *,
          overrides: list[str] = (), callbacks: list[Callback] = (), data=None, val_data=None,
          encoder: nn.Module | None = None, decoder: nn.Module | None = None) -> Path:
    """Train as `avae train` does, from a Config, a config dict, a YAML file or a preset name (with
    `--set`-style overrides), into `out` (default runs/DATASET-MODEL-TIME); returns the run directory.
    `callbacks` report after the built-in ones.

    `data` (and optionally `val_data`): images as a tensor or NumPy array ((N, H, W), (N, C, H, W) or
    (N, H, W, C); uint8 or floats in [0, 1]), an (images, labels) pair, or a torch Dataset of images or
    (image, label) items, in place of a named dataset (avae.data.given). `encoder`, `decoder`: your own
    networks as nn.Module instances, in place of the built-in ones (avae.user_nets). Such a run records
    what it can (the images' shapes and hash; the networks pickled with their code) and needs the same
    data again to resume or be evaluated."""
    settings = {}
    if data is not None:
        settings["data.name"] = GIVEN
    elif val_data is not None:
        raise AvaeError("val_data= goes with data=; give the training images as data=")
    if (encoder is None) != (decoder is None):
        raise AvaeError("give both encoder= and decoder= (nn.Module instances), or neither")
    if encoder is not None:
        settings |= {"model.encoder": user_nets.given_spec(encoder, "encoder"),
                     "model.decoder": user_nets.given_spec(decoder, "decoder")}
    cfg = config_mod.resolve(config, list(overrides), settings)
    given = GivenData(data, val_data) if data is not None else None
    networks = user_nets.GivenNetworks(encoder, decoder) if encoder is not None else None
    return start(cfg, run.as_path(out, "out") if out is not None else default_run_dir(cfg), callbacks,
                 given=given, networks=networks)


def start(cfg: Config, run_dir: Path, callbacks: list[Callback] = (), *, given: GivenData | None = None,
          networks: user_nets.GivenNetworks | None = None) -> Path:
    """Validate everything, then create the run directory (rank 0) and train."""
    dist = from_environment()
    try:
        return _start(cfg, Path(run_dir), dist, callbacks, given, networks)
    finally:
        dist.close()  # after _start has returned, so no DistributedDataParallel outlives the group


def _start(cfg: Config, run_dir: Path, dist: Dist, callbacks, given: GivenData | None,
           networks: user_nets.GivenNetworks | None) -> Path:
    data = load_data(cfg, given=given)
    with user_nets.search_path([os.getcwd()]):  # the user's own config: their networks may lie beside it
        model = seeded_model(cfg, data, networks)
    run_dir = Path(dist.broadcast(str(run_dir)))  # one folder, even if ranks' clocks named it differently
    # checks the device, makes `auto` settings concrete; a missing tracker package fails before the folder exists
    trainer = Trainer(cfg, run_dir, data, model, dist, _reporters(cfg, dist, callbacks))
    with run.lock(run.make_folder(run_dir)) if dist.is_main else nullcontext():
        if dist.is_main:
            run.create(run_dir, trainer.cfg, data_spec(data), data.info, trainer.auto, user_nets.code_record(cfg.model))
            if networks is not None:
                user_nets.save_given(run_dir, networks)
            if given is not None or networks is not None:
                print(f"note: {_needs(run_dir, given is not None, networks is not None)}", file=sys.stderr)
        dist.barrier()
        trainer.fit()  # which seeds each rank's torch randomness from the position under torchrun
    return run_dir


def resume(run_dir: Path, callbacks: list[Callback] = (), *, trust_code: bool = False, data=None,
           val_data=None) -> Path:
    """Continue a run from its last checkpoint (`avae train --resume`); a run naming its own network
    classes (or given them as instances) needs `trust_code=True`, a run given its images in Python
    the same `data` (and `val_data`) again."""
    dist = from_environment()
    try:
        given = GivenData(data, val_data) if data is not None else None
        return _resume(run.as_path(run_dir, "run_dir"), dist, callbacks, trust_code, given)
    finally:
        dist.close()


def _resume(run_dir: Path, dist: Dist, callbacks, trust_code: bool, given: GivenData | None) -> Path:
    record = run.read_record(run_dir)
    cfg = record.cfg
    run.check_resumable(run_dir)
    data = load_data(cfg, given=given)
    check_unchanged(data, record.data)
    with user_nets.trusted(run_dir, cfg.model, record.code, trust_code):
        networks = user_nets.load_given(run_dir) if user_nets.is_given(cfg.model) else None
        model = seeded_model(cfg, data, networks)
    trainer = Trainer(cfg, run_dir, data, model, dist, _reporters(cfg, dist, callbacks))
    with run.lock(run_dir) if dist.is_main else nullcontext():
        trainer.resume()
        trainer.fit()
    return run_dir


def _needs(run_dir: Path, data: bool, networks: bool) -> str:
    """What resuming and evaluating a run given Python objects will need from the caller, in one line."""
    asks = ["data=... (and val_data=...) as given now"] if data else []
    asks += ["trust_code=True (its networks are kept, with their code, in "
             f"{run_dir / user_nets.NETWORKS})"] if networks else []
    return f"avae.resume({run_dir}, ...) and avae.evaluate({run_dir}, ...) will need " + " and ".join(asks)


def _reporters(cfg: Config, dist: Dist, extra) -> list[Callback]:
    """Rank 0 reports: the callbacks the train section asks for, then `extra`."""
    extra = reporting.check_callbacks(extra)
    return reporting.from_settings(cfg.train) + extra if dist.is_main else []

