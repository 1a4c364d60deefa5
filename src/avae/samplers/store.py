"""Samplers of a run: fitted to its codes, kept in its directory, found again for its checkpoint.

  RUN_DIR/samplers/NAME-CHECKPOINT.pt   one fitted sampler (e.g. gmm-last.pt), written atomically:
      {"format", "sampler", "version" (of that sampler), "latent_dim", "settings" (plain values), "checkpoint",
       "checkpoint_sha256" (of the checkpoint file whose codes it was fitted to), "codes" (how the
       codes were drawn), "report" (its FitReport), "state" (tensors), "avae"}
      — read back with torch.load(path, weights_only=True).

A sampler is used only with the checkpoint it was fitted for: one whose recorded SHA-256 is not
that of the checkpoint file now (the run trained on, or the file was copied from another run) is
refused in one line that says how to fit it again.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import __version__, atomic, run, schema
from ..data import check_unchanged, load_data
from ..data.given import GivenData
from ..errors import AvaeError
from . import codes as codes_mod
from .base import SAMPLERS, FitReport, Sampler, need, sampler_class, settings_of

FOLDER = "samplers"
FORMAT = 1
CHECKPOINTS = ("last", "best")
FIT_CODES = 10000  # training images whose codes a sampler is fitted to and scored on (at most)
HELDOUT = 0.1  # the share of them held out to score the fit


@dataclass(frozen=True)
class Fitted:
    sampler: Sampler
    report: FitReport
    path: Path | None  # the file written; None for `prior` (the model's own, nothing to keep)


def path_of(run_dir: Path, name: str, checkpoint: str = "last") -> Path:
    return Path(run_dir) / FOLDER / f"{name}-{checkpoint}.pt"


def fit_sampler(run_dir, sampler: str, settings: dict | None = None, *, codes: int = FIT_CODES,
                heldout: float = HELDOUT, seed: int = 0, checkpoint: str = "last", trust_code: bool = False,
                progress: bool = False, data=None, val_data=None) -> Fitted:
    """Fit sampler `sampler` (settings: {name: value}) to the codes of a fixed, seeded subset of
    the run's training images (`codes` of them at most, a `heldout` share held out to score it),
    and save it as RUN_DIR/samplers/NAME-CHECKPOINT.pt; returns it with its report. `data`,
    `val_data`: the images of a run trained on Python objects, as given then."""
    run_dir = run.as_path(run_dir, "run_dir")
    cls = sampler_class(sampler)
    values = settings_of(cls, settings)
    if cls.requires:  # a missing package is named before any work
        need(*cls.requires, cls.name)
    codes = schema.check_value("codes", codes, int, {"minimum": 4})
    heldout = schema.check_value("heldout", heldout, float, {"above": 0, "below": 1})
    seed = schema.check_value("seed", seed, int, schema.SEED)
    schema.check_value("checkpoint", checkpoint, str, {"choices": CHECKPOINTS})
    schema.check_value("trust_code", trust_code, bool, {})
    record = run.read_record(run_dir)
    cfg, spec = record.cfg, record.spec
    sha256 = run.checkpoint_sha256(run_dir, checkpoint)
    model = run.open_model(record, trust_code)
    run.load_weights(model, run_dir, checkpoint)
    model.eval().requires_grad_(False)
    # the training split as the run trained on it
    data = load_data(cfg, given=GivenData(data, val_data) if data is not None else None)
    check_unchanged(data, record.data)
    layout = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    model.to(memory_format=layout)
    z = codes_mod.of_images(model, data.train, spec.value_range, size=codes, heldout=heldout, seed=seed, layout=layout)
    if run.checkpoint_sha256(run_dir, checkpoint) != sha256:
        raise AvaeError(f"{run.checkpoint_path(run_dir, checkpoint)} changed while its codes were read (is the run "
                        "training?); fit the sampler when it has finished")
    fitted = cls.of_model(model) if not cls.fitted else cls(model.latent_dim, values)
    report = fitted.fit(z.train, z.heldout, seed, progress=progress)
    report = dataclasses.replace(report, details={"codes": z.what, **report.details})
    fitted.report = report
    if not cls.fitted:
        return Fitted(fitted, report, None)
    record = {
        "format": FORMAT, "sampler": cls.name, "version": cls.version, "latent_dim": model.latent_dim,
        "settings": dataclasses.asdict(values), "checkpoint": checkpoint, "checkpoint_sha256": sha256,
        "codes": {"size": codes, "heldout": heldout, "seed": seed, "what": z.what, "split": "train",
                  "train": len(z.train), "held_out": len(z.heldout)},
        "report": report.as_dict(), "state": {k: v.detach().clone() for k, v in fitted.state_dict().items()},
        "avae": __version__,
    }
    folder = run.subfolder(run_dir, FOLDER)
    atomic.remove_stale_temporaries(folder)
    path = folder / f"{cls.name}-{checkpoint}.pt"
    atomic.save_file(lambda tmp: torch.save(record, tmp), path)
    return Fitted(fitted, report, path)


def load_for_run(run_dir, name: str, model=None, checkpoint: str = "last", *, sha256: str | None = None) -> Sampler:
    """Sampler `name` of a run for its `checkpoint`: `prior` is the model's own (give `model`);
    any other is read from RUN_DIR/samplers/ and refused unless it was fitted for that checkpoint
    (`sha256`: the checkpoint's SHA-256 when the caller has it, else read from the file)."""
    run_dir = run.as_path(run_dir, "run_dir")
    cls = sampler_class(name)
    schema.check_value("checkpoint", checkpoint, str, {"choices": CHECKPOINTS})
    if not cls.fitted:
        if model is None:
            raise AvaeError(f"the {name} sampler is the model's own; pass the model (avae.load(run_dir)) to get it")
        return cls.of_model(model)
    sampler = _read(run_dir, cls, checkpoint, sha256 or run.checkpoint_sha256(run_dir, checkpoint))
    if model is not None and sampler.latent_dim != model.latent_dim:
        raise AvaeError(f"{path_of(run_dir, name, checkpoint)} holds a sampler of {sampler.latent_dim}-dimensional "
                        f"codes, but the run's model has {model.latent_dim}; it was copied from another run: "
                        f"{_refit(run_dir, name, checkpoint)}")
    return sampler


def for_model(model, sampler) -> Sampler:
    """What `Model.sample(n, sampler=...)` draws codes from: a Sampler as it is, 'prior', or the
    name of a sampler of the run the model was opened from (by avae.load)."""
    if isinstance(sampler, Sampler):
        if sampler.latent_dim != model.latent_dim:
            raise AvaeError(f"the {sampler.name} sampler draws {sampler.latent_dim}-dimensional codes, but the model's "
                            f"codes have {model.latent_dim}; give a sampler fitted to this model")
        return sampler
    if not isinstance(sampler, str):
        raise AvaeError(f"sampler must be a sampler's name or an avae.samplers.Sampler, got {schema.show(sampler)}")
    cls = sampler_class(sampler)
    if not cls.fitted:
        return cls.of_model(model)
    origin = model.origin
    if origin is None:
        raise AvaeError(f"sampler={sampler!r} names a sampler of a run, but this model was not opened with "
                        f"avae.load(run_dir); pass avae.samplers.load_for_run(run_dir, {sampler!r}, model) instead")
    return load_for_run(origin.run_dir, sampler, model, origin.checkpoint, sha256=origin.sha256)


def sample_codes(run_dir, names, model, n: int, seed: int, checkpoint: str = "last") -> dict[str, np.ndarray]:
    """{name: n codes (float64)} drawn by each named sampler from a generator seeded with `seed`
    (for `prior`, the very codes the model's own sampling draws with that seed). Every sampler is
    found before any is drawn from, so a missing or stale one fails first."""
    names = parse_names(names)
    found = {name: load_for_run(run_dir, name, model, checkpoint) for name in names}
    return {name: s.sample(n, torch.Generator().manual_seed(seed)).double().numpy() for name, s in found.items()}


def parse_names(names) -> list[str]:
    """Sampler names from 'prior,gmm,flow' or a list: each known, none twice."""
    items = names.split(",") if isinstance(names, str) else names
    if not isinstance(items, (list, tuple)) or not items:
        raise AvaeError(f"samplers must be names separated by commas (e.g. prior,gmm), got {schema.show(names)}")
    items = [item.strip() if isinstance(item, str) else item for item in items]
    for item in items:
        sampler_class(item)
    twice = sorted({item for item in items if items.count(item) > 1})
    if twice:
        raise AvaeError(f"sampler {', '.join(twice)} is named twice; name each sampler once")
    return items


def exportable() -> list[str]:
    """The samplers whose sampling `avae export` writes as plain tensors."""
    return [name for name, cls in SAMPLERS.items()
            if not cls.fitted or cls.export_tensors is not Sampler.export_tensors]


def _refit(run_dir: Path, name: str, checkpoint: str) -> str:
    flag = "" if checkpoint == "last" else f" --checkpoint {checkpoint}"
    return f"fit it again with `avae fit-sampler {run_dir} --sampler {name}{flag}`"


def _read(run_dir: Path, cls, checkpoint: str, sha256: str) -> Sampler:
    path = path_of(run_dir, cls.name, checkpoint)
    if path.is_symlink():
        raise AvaeError(f"{path} is a symbolic link; {atomic.LINK_ADVICE}")
    if not path.is_file():
        raise AvaeError(f"{run_dir} has no {cls.name} sampler for its {checkpoint} checkpoint; fit one with "
                        f"`avae fit-sampler {run_dir} --sampler {cls.name}"
                        f"{'' if checkpoint == 'last' else ' --checkpoint ' + checkpoint}`")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged file
        raise AvaeError(f"{path} cannot be read ({type(e).__name__}): it is corrupt; "
                        f"{_refit(run_dir, cls.name, checkpoint)}") from None
    keys = ("format", "sampler", "latent_dim", "settings", "checkpoint_sha256", "state")
    if (not isinstance(record, dict) or any(key not in record for key in keys) or record["sampler"] != cls.name
            or not isinstance(record["state"], dict) or not isinstance(record["latent_dim"], int)):
        raise AvaeError(f"{path} is not a {cls.name} sampler written by `avae fit-sampler`; "
                        f"{_refit(run_dir, cls.name, checkpoint)}")
    if record["format"] != FORMAT:
        raise AvaeError(f"{path} was written in format {record['format']} (this avae reads {FORMAT}); "
                        f"{_refit(run_dir, cls.name, checkpoint)}")
    if record.get("version", 1) != cls.version:
        raise AvaeError(f"{path} was fitted by version {record.get('version', 1)} of the {cls.name} sampler, which "
                        f"draws differently from this avae's version {cls.version}; {_refit(run_dir, cls.name, checkpoint)}")
    if record["checkpoint_sha256"] != sha256:
        raise AvaeError(f"{path} was fitted for another checkpoint (SHA-256 {str(record['checkpoint_sha256'])[:12]}…, "
                        f"checkpoints/{checkpoint}.pt is {sha256[:12]}…); {_refit(run_dir, cls.name, checkpoint)}")
    try:
        settings = settings_of(cls, record["settings"])
    except AvaeError as e:
        raise AvaeError(f"{path} holds settings this avae does not accept ({e}); "
                        f"{_refit(run_dir, cls.name, checkpoint)}") from None
    sampler = cls(record["latent_dim"], settings)  # a missing optional extra is named here
    try:
        sampler.load_state_dict(record["state"])
    except (ValueError, RuntimeError, KeyError, TypeError) as e:
        raise AvaeError(f"{path} is damaged ({run.first_line(e)}); {_refit(run_dir, cls.name, checkpoint)}") from None
    try:
        sampler.report = FitReport(**record.get("report") or {})
    except TypeError:
        sampler.report = None
    return sampler
