"""Resolved configurations: built-in defaults ← dataset preset ← config file ← overrides.

A config has three sections, `data`, `model` and `train`. Each dataset's preset
(configs/datasets/<name>.yaml) holds the paper's settings for it, with per-model defaults under
`models:`; the chosen model's entry is merged into `model`.
"""
from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from .errors import AvaeError

class _Loader(yaml.SafeLoader):
    """YAML that also reads 5e-4 (no dot) as a number, as people write learning rates."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str):
    return yaml.load(text, Loader=_Loader)


DEFAULTS = {
    # split_seed fixes random train/validation splits (dSprites, 3D Shapes) across runs, as the paper
    "data": {"name": "dsprites", "root": None, "split_seed": 0, "train_size": None, "val_size": None, "options": {}},
    "model": {"name": "avae", "latent_dim": 16, "arch": None, "width": 1.0},
    "train": {},  # TrainConfig's defaults
}


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 100
    lr: float = 5e-4
    lr_factor: float = 0.5  # ReduceLROnPlateau on the validation objective
    lr_patience: int = 5
    lr_threshold: float = 1e-4
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    precision: str = "float32"  # or bfloat16 (autocast; KDE and losses stay float32)
    channels_last: bool = True
    val_batch_size: int = 500
    figures_every: int = 1  # epochs between figure sets, and after the last (0: none)
    figure_points: int = 2000  # validation codes in the latent figures
    checkpoint_minutes: float = 5.0  # mid-epoch checkpoint interval
    progress: bool = True
    tensorboard: bool = False  # scalars and figures per epoch in RUN_DIR/tensorboard (avae[tensorboard])
    wandb: bool = False  # Weights & Biases, offline unless WANDB_MODE is set (avae[wandb])
    mlflow: bool = False  # MLflow, a file store in RUN_DIR/mlruns unless MLFLOW_TRACKING_URI is set (avae[mlflow])

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise AvaeError(f"unknown train setting {', '.join(unknown)}; known: {', '.join(known)}")
        tc = cls(**values)
        for name, f in known.items():
            default = f.default
            value = getattr(tc, name)
            if isinstance(default, (int, float)) and not isinstance(default, bool):
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise AvaeError(f"train.{name} must be a number, got {value!r}")
        if tc.epochs < 1 or tc.batch_size < 2 or tc.lr <= 0:
            raise AvaeError("train.epochs must be ≥ 1, train.batch_size ≥ 2 and train.lr > 0")
        if tc.precision not in ("float32", "bfloat16"):
            raise AvaeError(f"train.precision must be float32 or bfloat16, got {tc.precision!r}")
        return tc


def preset_names() -> list[str]:
    return sorted(p.stem for p in _configs().iterdir() if p.suffix == ".yaml")


def resolve(config: str | Path | dict | None = None, overrides: list[str] = ()) -> dict:
    """The full configuration for a run. `config` is a YAML path, a preset name or a dict of sections."""
    if isinstance(config, dict):
        user = copy.deepcopy(config)
    else:
        user = _read_yaml(_find(str(config))) if config else {}
    patch: dict = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise AvaeError(f"override '{item}' must look like section.key=value, e.g. model.kde_size=1000")
        _set(patch, key.split("."), load_yaml(raw))
    for section in list(user) + list(patch):
        if section not in DEFAULTS:
            raise AvaeError(f"unknown config section '{section}'; sections are: data, model, train")

    dataset = _pick(patch, user, "data")
    model = _pick(patch, user, "model")
    preset = _dataset_preset(dataset)
    per_model = preset.pop("models", {})
    cfg = _merge(DEFAULTS, preset)
    cfg = _merge(cfg, {"model": per_model.get(model, {})})
    cfg = _merge(cfg, user)
    cfg = _merge(cfg, patch)
    TrainConfig.from_dict(cfg["train"])  # fail early on a bad train section
    return cfg


def _pick(patch, user, section):
    for source in (patch, user):
        name = source.get(section, {}).get("name")
        if name is not None:
            return name
    return DEFAULTS[section]["name"]


def _dataset_preset(name: str) -> dict:
    path = _configs() / "datasets" / f"{name}.yaml"
    return _read_yaml(path) if path.is_file() else {}


def _configs():
    return resources.files("avae") / "configs"


def _find(config: str):
    path = Path(config)
    if path.is_file():
        return path
    preset = _configs() / f"{config}.yaml"
    if preset.is_file():
        return preset
    raise AvaeError(f"config '{config}' is neither a file nor a preset; presets are: {', '.join(preset_names())}")


def _read_yaml(path) -> dict:
    try:
        data = load_yaml(path.read_text())
    except yaml.YAMLError as e:
        raise AvaeError(f"config {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AvaeError(f"config {path} must be a mapping of sections (data, model, train)")
    return data


def _set(tree: dict, keys: list[str], value) -> None:
    for key in keys[:-1]:
        tree = tree.setdefault(key, {})
    tree[keys[-1]] = value


def _merge(base: dict, patch: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)


def flatten(cfg: dict, prefix: str = "") -> dict:
    """{'model': {'latent_dim': 16}} → {'model.latent_dim': 16} (the names `--set` uses)."""
    out = {}
    for key, value in cfg.items():
        if isinstance(value, dict) and value:
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out
