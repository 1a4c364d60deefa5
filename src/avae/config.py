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
from typing import TYPE_CHECKING

import yaml

from . import schema
from .errors import AvaeError
from .schema import setting

if TYPE_CHECKING:
    from .models import ModelSettings


class _Loader(yaml.SafeLoader):
    """YAML that also reads 5e-4 (no dot) as a number, as people write learning rates."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _mapping_without_repeats(loader, node):
    """A YAML mapping whose own keys all differ: a repeated key is an error, not a silent override
    (keys merged in by `<<` may still be overridden, as YAML says)."""
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
            continue
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice", key_node.start_mark)
        seen.add(key)
    yield from loader.construct_yaml_map(node)


_Loader.add_constructor("tag:yaml.org,2002:map", _mapping_without_repeats)
MAX_VALUES = 100_000  # a config of more values than this is refused (YAML aliases can nest a billion)


def load_yaml(text: str):
    data = yaml.load(text, Loader=_Loader)
    _check_size(data)
    return data


def _check_size(data) -> None:
    """Count the values a YAML document expands to, stopping at MAX_VALUES (so in bounded time):
    anchors and aliases let a small file hold more values than any config needs, or a cycle."""
    pending, count = [data], 0
    while pending:
        value = pending.pop()
        count += 1
        if count > MAX_VALUES:
            raise yaml.YAMLError(f"it expands to more than {MAX_VALUES:,} values (through anchors and aliases)")
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)


@dataclass(frozen=True)
class DataSettings:
    name: str = setting("dsprites")
    root: str | None = setting(None)
    # fixes random train/validation splits (dSprites, 3D Shapes) across runs, as the paper
    split_seed: int = setting(0, **schema.SEED)
    train_size: int | None = setting(None, minimum=1)
    val_size: int | None = setting(None, minimum=1)
    options: dict = setting(factory=dict)  # the dataset's own options (each loader checks their names)


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = setting(10, minimum=1)
    batch_size: int = setting(100, minimum=2)
    lr: float = setting(5e-4, above=0)
    lr_factor: float = setting(0.5, above=0, below=1)  # ReduceLROnPlateau on the validation objective
    lr_patience: int = setting(5, minimum=0)
    lr_threshold: float = setting(1e-4, minimum=0)
    seed: int = setting(0, **schema.SEED)
    device: str = setting("auto")  # auto, cpu, cuda, cuda:N
    # auto: what is fastest on the machine at hand (avae.hardware), made concrete in the run
    precision: str = setting("auto", choices=("auto", "float32", "bfloat16"))  # bfloat16: autocast; KDE, losses float32
    channels_last: bool | None = setting(None)  # null: auto
    threads: int | None = setting(None, minimum=1, maximum=4096)  # torch's intra-op threads; null: auto
    val_batch_size: int = setting(500, minimum=1)
    figures_every: int = setting(1, minimum=0)  # epochs between figure sets, and after the last (0: none)
    figure_points: int = setting(2000, minimum=2)  # validation codes in the latent figures
    checkpoint_minutes: float = setting(5.0, minimum=0)  # mid-epoch checkpoint interval
    progress: bool = setting(True)
    tensorboard: bool = setting(False)  # scalars and figures per epoch in RUN_DIR/tensorboard (avae[tensorboard])
    wandb: bool = setting(False)  # Weights & Biases, offline unless WANDB_MODE is set (avae[wandb])
    mlflow: bool = setting(False)  # MLflow, a file store in RUN_DIR/mlruns unless MLFLOW_TRACKING_URI is set (avae[mlflow])


@dataclass(frozen=True)
class EvaluationSettings:
    """The settings of an evaluation: the keyword arguments of `avae.evaluate`, a suite's `evaluate:`
    and the flags of `avae evaluate` all take their defaults from here."""

    n: int = setting(10000, minimum=10)  # held-out images, samples and interpolations (each)
    seed: int = setting(0, **schema.SEED)  # seed of every metric's draws
    features: str = setting("auto", choices=("auto", "classifier", "random", "inception"))  # FD/PR feature space
    inception_weights: str | None = setting(None)  # path of the Inception-v3 weights (offline)
    checkpoint: str = setting("last", choices=("last", "best"))
    split: str | None = setting(None, choices=("test", "val"))  # None: test where it exists, else val
    disentanglement: str = setting("fast", choices=("default", "fast", "none"))  # metric sizes (factor datasets)
    entropy_kde_size: int = setting(10000, minimum=2)  # m whose bandwidth the entropy's KDE uses
    classifier_images: int = setting(10000, minimum=10)  # training images of the feature classifier
    classifier_epochs: int = setting(3, minimum=1)
    samplers: str = setting("prior")  # names separated by commas: the N set is scored once per sampler
    # The importance-sampled log-likelihood of the VAE family (evaluate.json "likelihood"): K draws of the
    # posterior per image, over the first `likelihood_images` held-out images. On a Fashion-MNIST VAE of the
    # paper-cpu suite (l = 16, width 0.25, 3 epochs; 500 test images) the NLL is 612.34 / 611.13 / 610.84 /
    # 610.76 nats at K = 1 / 10 / 100 / 1000: K = 100 is within 0.1 nat of K = 1000 at a tenth of its cost.
    # K = 100 costs 7–12 s per 1000 images there, 25–31 s for dSprites (64×64, width 0.5) and 56–62 s at
    # the paper's width 1 (2-core AMD EPYC, AVX-512, torch 2.13 CPU, beside other work). Over 1000 images the
    # standard error between images is about 0.3 nat, a few times the bias K = 100 leaves, so the default keeps
    # to 1000 images rather than all n = 10,000, which would add minutes to every evaluation of the suite.
    likelihood_samples: int = setting(100, minimum=0)  # K per image (0: not computed)
    likelihood_images: int = setting(1000, minimum=1)  # held-out images it averages over (at most n)
    progress: bool = setting(True)


EVALUATE_DEFAULTS = EvaluationSettings()
EVALUATE_SETTINGS = schema.fields(EvaluationSettings)  # name → (type, rules)


def check_evaluate_settings(values: dict, where: str = "evaluate") -> dict:
    unknown = sorted(set(values) - set(EVALUATE_SETTINGS))
    if unknown:
        raise AvaeError(f"unknown {where} setting {', '.join(unknown)}; known: {', '.join(EVALUATE_SETTINGS)}")
    return schema.check_fields(where, EVALUATE_SETTINGS, values)


SECTIONS = ("data", "model", "train")


def check_section(section: str, cls, values) -> dict:
    """A section's values checked against the dataclass that declares them."""
    if not isinstance(values, dict):
        raise AvaeError(f"config section '{section}' must be a mapping of settings, got {schema.show(values)}")
    declared = schema.fields(cls)
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise AvaeError(f"unknown {section} setting {', '.join(map(str, unknown))}; known: {', '.join(declared)}")
    missing = [name for name in schema.required(cls) if name not in values]
    if missing:
        raise AvaeError(f"{section} has no {', '.join(missing)}; it needs: {', '.join(schema.required(cls))}")
    return schema.check_fields(section, declared, values)


def validate(cfg) -> dict:
    """A whole config checked: its sections, every value's type and range (values normalised)."""
    from .models import check_model_section

    if not isinstance(cfg, dict):
        raise AvaeError(f"a config must be a mapping of sections ({', '.join(SECTIONS)}), got {schema.show(cfg)}")
    for section in cfg:
        if section not in SECTIONS:
            raise AvaeError(f"unknown config section '{section}'; sections are: {', '.join(SECTIONS)}")
    missing = [s for s in SECTIONS if s not in cfg]
    if missing:
        raise AvaeError(f"config has no section {', '.join(missing)}; sections are: {', '.join(SECTIONS)}")
    return {"data": check_section("data", DataSettings, cfg["data"]), "model": check_model_section(cfg["model"]),
            "train": check_section("train", TrainSettings, cfg["train"])}


def preset_names() -> list[str]:
    return sorted(_presets())


def _presets() -> dict:
    """{name: path} of the run configs shipped in configs/ (files of other content are not presets)."""
    found = {}
    for path in _configs().iterdir():
        if path.suffix == ".yaml":
            content = load_yaml(path.read_text())
            if isinstance(content, dict) and set(content) <= set(SECTIONS):
                found[path.stem] = path
    return found


def resolve(config: "str | Path | dict | Config | None" = None, overrides: list[str] = (),
            settings: dict | None = None) -> "Config":
    """The full, validated configuration for a run. `config` is a YAML path, a preset name, a dict of sections
    or a Config; `overrides` are `--set` strings (section.key=YAML value), `settings` the same as values
    ({"model.width": 0.5, "data.root": None}), applied after them."""
    if isinstance(config, Config):
        config = config.to_dict()
    if isinstance(config, dict):
        user = copy.deepcopy(config)
    else:
        user = read_yaml(_find(str(config)), "config") if config else {}
    _check_sections(user, f"config {config if not isinstance(config, dict) else '(a dict)'}")
    patch: dict = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise AvaeError(f"override '{item}' must look like section.key=value, e.g. model.kde_size=1000")
        _set(patch, _keys(key, item), _override_value(key, raw))
    for key, value in (settings or {}).items():
        _set(patch, _keys(key, f"{key}: {schema.show(value)}"), copy.deepcopy(value))
    _check_sections(patch, "--set")

    dataset = _pick(patch, user, "data")
    model = _pick(patch, user, "model")
    preset = _dataset_preset(dataset)
    per_model = preset.pop("models", {})
    cfg = _merge(defaults(), preset)
    cfg = _merge(cfg, {"model": per_model.get(model, {})})
    cfg = _merge(cfg, user)
    cfg = _merge(cfg, patch)
    return Config.from_dict(cfg)


@dataclass(frozen=True)
class Config:
    """A run's whole configuration, every default written out: resolved once (`resolve`), then passed
    along unchanged; a changed setting is a new Config (`dataclasses.replace`). Its YAML form is the
    sections data, model (the common settings and the model's own Params together) and train."""

    data: DataSettings
    model: ModelSettings  # the settings every model has
    params: object  # the chosen model's own settings: an instance of MODELS[model.name].Params
    train: TrainSettings

    @classmethod
    def from_dict(cls, tree) -> "Config":
        """A config from its sections (as config.yaml holds them), checked, with every default filled in."""
        from .data.base import dataset_options
        from .models import MODELS, ModelSettings

        cfg = validate(tree)
        data = {**dataclasses.asdict(DataSettings()), **cfg["data"]}
        data["options"] = dataset_options(data["name"], data["options"] or {})
        model = cfg["model"]
        common = schema.fields(ModelSettings)
        return cls(data=DataSettings(**data),
                   model=ModelSettings(**{k: v for k, v in model.items() if k in common}),
                   params=MODELS[model["name"]].Params(**{k: v for k, v in model.items() if k not in common}),
                   train=TrainSettings(**cfg["train"]))

    def to_dict(self) -> dict:
        """The sections as plain values: what config.yaml holds and `from_dict` reads back to an equal Config."""
        return copy.deepcopy({"data": dataclasses.asdict(self.data),
                              "model": {**dataclasses.asdict(self.model), **dataclasses.asdict(self.params)},
                              "train": dataclasses.asdict(self.train)})


def defaults() -> dict:
    """The built-in sections: every data and common model setting, no train setting (TrainSettings' defaults apply)."""
    from .models import ModelSettings

    return {"data": dataclasses.asdict(DataSettings()), "model": dataclasses.asdict(ModelSettings()), "train": {}}


def _check_sections(tree: dict, where: str) -> None:
    for section, values in tree.items():
        if section not in SECTIONS:
            raise AvaeError(f"unknown config section '{section}' in {where}; sections are: {', '.join(SECTIONS)}")
        if values is not None and not isinstance(values, dict):
            raise AvaeError(f"config section '{section}' in {where} must be a mapping of settings "
                            f"(e.g. {section}.name=...), got {schema.show(values)}")
        if values is None:
            tree[section] = {}


def _keys(key, item: str) -> list[str]:
    if not isinstance(key, str) or not key or "" in key.split("."):
        raise AvaeError(f"override '{item}' must look like section.key=value, e.g. model.kde_size=1000")
    return key.split(".")


def _override_value(key: str, raw: str):
    try:
        return load_yaml(raw)
    except yaml.YAMLError as e:
        raise AvaeError(f"--set {key}={raw}: the value is not valid YAML ({_first_line(e)}); quote it or fix it") from None


def _pick(patch, user, section):
    for source in (patch, user):
        name = source.get(section, {}).get("name")
        if name is not None:
            return schema.check_value(f"{section}.name", name, str, {})
    return defaults()[section]["name"]


def _dataset_preset(name: str) -> dict:
    path = _configs() / "datasets" / f"{name}.yaml"
    return read_yaml(path, "preset") if path.is_file() else {}


def _configs():
    return resources.files("avae") / "configs"


def _find(config: str):
    path = Path(config)
    if path.is_file():
        return path
    if path.exists():
        raise AvaeError(f"config {config} is not a file; give a YAML file or a preset ({', '.join(preset_names())})")
    preset = _presets().get(config)
    if preset is not None:
        return preset
    raise AvaeError(f"config '{config}' is neither a file nor a preset; presets are: {', '.join(preset_names())}")


def read_yaml(path, what: str) -> dict:
    """A YAML mapping from a file, every way it can be unreadable reported in one line."""
    try:
        data = load_yaml(Path(path).read_text())
    except OSError as e:
        raise AvaeError(f"{what} {path} cannot be read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise AvaeError(f"{what} {path} is not a text file; give a YAML file") from None
    except yaml.YAMLError as e:
        raise AvaeError(f"{what} {path} is not valid YAML ({_first_line(e)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AvaeError(f"{what} {path} must be a mapping (key: value), got {schema.show(data)}")
    return data


def _first_line(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    hint = "; indent with spaces, not tabs" if "\\t" in problem or "tab" in problem else ""
    return problem + where + hint


def _set(tree: dict, keys: list[str], value) -> None:
    for i, key in enumerate(keys[:-1]):
        tree = tree.setdefault(key, {})
        if not isinstance(tree, dict):
            raise AvaeError(f"--set {'.'.join(keys)}: {'.'.join(keys[: i + 1])} is set to {schema.show(tree)}, "
                            "which is not a mapping of settings")
    tree[keys[-1]] = value


def _merge(base: dict, patch: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def dump(cfg: "Config | dict") -> str:
    return yaml.safe_dump(cfg.to_dict() if isinstance(cfg, Config) else cfg, sort_keys=False)


def flatten(cfg: dict, prefix: str = "") -> dict:
    """{'model': {'latent_dim': 16}} → {'model.latent_dim': 16} (the names `--set` uses)."""
    out = {}
    for key, value in cfg.items():
        if isinstance(value, dict) and value:
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out
