"""Your own encoder and decoder in a config: importable classes named `module:Class`, with keyword
arguments beside the name.

    model:
      encoder: {class: "mynets:Encoder", hidden: 256}
      decoder: {class: "mynets:Decoder", hidden: 256}

The classes are called as Encoder(shape=(C, H, W), out_dim=k·l, **kwargs) and
Decoder(shape=(C, H, W), latent_dim=l, **kwargs); the encoder maps float images (B, C, H, W) in the
data's value range to (B, k·l) (k = 2 for Gaussian encoders: mean, then log-variance), and the
decoder maps codes (B, l) to raw outputs (B, C, H, W) that the likelihood turns into images
(sigmoid, or tanh for [−1, 1] data). Everything else — the loop, run directory, resume, figures,
evaluation — is the same as with the built-in networks.

Or the networks themselves, as `nn.Module` instances: `avae.train(encoder=..., decoder=...)`. The
config then names their classes with `given: true`; the run keeps the two modules, pickled with
their classes' code (cloudpickle, by value for the user's own modules), in RUN_DIR/networks.pkl,
and a copy of those modules' source files in RUN_DIR/code/, so the run opens from any folder.

Building such a model runs the user's code, so it happens only on the user's word: training from
their own config imports from the current folder (as `python -m` does); a run directory opened
later (sample, evaluate, export, resume, `avae.load`) imports its classes or unpickles its networks
only with `--trust-code` / `trust_code=True`, and then first from the folders recorded when it was
trained.
"""
from __future__ import annotations

import importlib
import inspect
import os
import pickle
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .atomic import save_file
from .errors import AvaeError
from .schema import show

NETWORKS, CODE = "networks.pkl", "code"  # in the run directory of networks given as instances


@dataclass(frozen=True)
class UserNetworks:
    encoder: dict  # {"class": "module:Class", **keyword arguments}
    decoder: dict

    @classmethod
    def from_config(cls, encoder, decoder) -> "UserNetworks":
        if encoder is None or decoder is None:
            raise AvaeError("give both model.encoder and model.decoder (each {class: module:Class, ...}), or neither")
        return cls(_spec(encoder, "encoder"), _spec(decoder, "decoder"))

    def build(self, shape: tuple[int, int, int], latent_dim: int, encoder_outputs: int) -> tuple[nn.Module, nn.Module]:
        encoder = _instance(self.encoder, "encoder", shape=tuple(shape), out_dim=encoder_outputs)
        decoder = _instance(self.decoder, "decoder", shape=tuple(shape), latent_dim=latent_dim)
        _check_shapes(encoder, decoder, tuple(shape), latent_dim, encoder_outputs)
        return encoder, decoder


@dataclass(frozen=True)
class GivenNetworks:
    """An encoder and a decoder given as instances: used as they are, after the same shape check."""

    encoder: nn.Module
    decoder: nn.Module

    def build(self, shape: tuple[int, int, int], latent_dim: int, encoder_outputs: int) -> tuple[nn.Module, nn.Module]:
        _check_shapes(self.encoder, self.decoder, tuple(shape), latent_dim, encoder_outputs)
        return self.encoder, self.decoder


def given_spec(network, key: str) -> dict:
    """What a config records of a network given as an instance: its class, marked as given."""
    if not isinstance(network, nn.Module):
        raise AvaeError(f"{key} must be a torch.nn.Module instance, got {show(network)}")
    cls = type(network)
    return {"class": f"{cls.__module__}:{cls.__qualname__}", "given": True}


def is_given(model) -> bool:
    """Whether a model's settings name networks given as instances (kept in RUN_DIR/networks.pkl)."""
    return any(isinstance(spec, dict) and spec.get("given") for spec in (model.encoder, model.decoder))


def save_given(run_dir: Path, networks: GivenNetworks) -> None:
    """networks.pkl (the two modules with their classes' code) and code/ (their modules' source files)."""
    import cloudpickle

    modules = {type(net).__module__: sys.modules.get(type(net).__module__) for net in (networks.encoder, networks.decoder)}
    own = [module for module in modules.values() if module is not None and _users(module)]
    for module in own:
        cloudpickle.register_pickle_by_value(module)
    try:
        payload = cloudpickle.dumps({"encoder": networks.encoder, "decoder": networks.decoder})
    finally:
        for module in own:
            cloudpickle.unregister_pickle_by_value(module)
    save_file(lambda tmp: tmp.write_bytes(payload), run_dir / NETWORKS)
    for module in own:
        source = inspect.getsourcefile(module) if getattr(module, "__file__", None) else None
        if source:
            (run_dir / CODE).mkdir(exist_ok=True)
            save_file(lambda tmp: shutil.copyfile(source, tmp), run_dir / CODE / Path(source).name)


def load_given(run_dir: Path) -> GivenNetworks:
    """The networks a run was given (call only on the user's word: unpickling runs their code)."""
    path = Path(run_dir) / NETWORKS
    try:
        with search_path([Path(run_dir) / CODE]):
            saved = pickle.loads(path.read_bytes())
    except FileNotFoundError:
        raise AvaeError(f"{path} is missing: this run's networks were given as instances and are kept there; "
                        "put the file back") from None
    except Exception as e:  # whatever unpickling the user's classes raises
        raise AvaeError(f"{path} cannot be opened ({type(e).__name__}: {e}); it needs the packages its "
                        "networks import") from None
    return GivenNetworks(saved["encoder"], saved["decoder"])


def _users(module) -> bool:
    """A module of the user's (pickled by value), not one of an installed package or of avae."""
    name, file = module.__name__, getattr(module, "__file__", None) or ""
    return not name.startswith(("torch", "avae")) and "site-packages" not in file and "dist-packages" not in file


def _spec(value, key: str) -> dict:
    if isinstance(value, str):
        value = {"class": value}
    if not isinstance(value, dict) or not isinstance(value.get("class"), str) or ":" not in value["class"]:
        raise AvaeError(f"model.{key} must be {{class: module:Class, ...keyword arguments}}, got {show(value)}")
    return dict(value)


def import_class(path: str, key: str) -> type:
    """The class named 'module:Class', imported from sys.path (see `search_path`)."""
    module_name, _, class_name = path.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
        raise AvaeError(f"model.{key} class '{path}' cannot be imported ({e}); check the module is on PYTHONPATH") from None
    if not (isinstance(found, type) and issubclass(found, nn.Module)):
        raise AvaeError(f"model.{key} '{path}' is not a torch.nn.Module class")
    return found


def class_names(model) -> list[str]:
    """The 'module:Class' names of the user's networks in a model's settings (none for built-in networks)."""
    specs = [model.encoder, model.decoder]
    named = [spec.get("class") if isinstance(spec, dict) else spec for spec in specs if spec is not None]
    return [name if isinstance(name, str) else show(name) for name in named]


@contextmanager
def search_path(folders):
    """`folders` searched first by imports inside the block (and no longer after it)."""
    added = [str(f) for f in folders if str(f) not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for folder in added:
            if folder in sys.path:
                sys.path.remove(folder)


def code_record(model) -> dict:
    """Where the user's network modules were imported from at training time, for run.json:
    {module: {"file", "root" (the folder that imports it)}}."""
    record = {}
    for name in class_names(model):
        module_name = name.partition(":")[0]
        file = getattr(sys.modules.get(module_name), "__file__", None)
        if file is None:
            continue
        file = Path(file).resolve()
        depth = module_name.count(".") + (1 if file.stem == "__init__" else 0)
        record[module_name] = {"file": str(file), "root": str(file.parents[depth])}
    return record


@contextmanager
def trusted(where, model, record: dict, trust_code: bool):
    """Building a received run's model: refused in one line when it names the user's network classes
    and the user has not said to trust them; otherwise imports search the recorded folders first."""
    names = class_names(model)
    if names and not trust_code:
        raise AvaeError(f"{where} names its own network classes ({', '.join(names)}); opening it runs their code: "
                        "pass --trust-code (trust_code=True) only for a run whose code you trust")
    entries = record.values() if isinstance(record, dict) else ()  # (a damaged record names no folder)
    roots = [entry["root"] for entry in entries if isinstance(entry, dict) and isinstance(entry.get("root"), str)]
    with search_path([root for root in roots if os.path.isdir(root)]):
        yield


def _instance(spec: dict, key: str, **required) -> nn.Module:
    kwargs = {k: v for k, v in spec.items() if k != "class"}
    try:
        return import_class(spec["class"], key)(**required, **kwargs)
    except TypeError as e:
        raise AvaeError(f"model.{key} '{spec['class']}' does not take ({', '.join([*required, *kwargs])}): {e}") from None


@torch.no_grad()
def _check_shapes(encoder, decoder, shape, latent_dim, encoder_outputs) -> None:
    """One forward pass of two blank images, in eval mode, so a mismatch is reported before training."""
    encoder.eval(), decoder.eval()
    try:
        codes = encoder(torch.zeros(2, *shape))
        _check_tensor(codes, "encoder", "codes")
        images = decoder(torch.zeros(2, latent_dim))
        _check_tensor(images, "decoder", "images")
    finally:
        encoder.train(), decoder.train()
    if tuple(codes.shape) != (2, encoder_outputs):
        raise AvaeError(f"model.encoder returns {tuple(codes.shape)[1:]} per image; it must return ({encoder_outputs},)")
    if tuple(images.shape) != (2, *shape):
        raise AvaeError(f"model.decoder returns {tuple(images.shape)[1:]} per code; it must return {tuple(shape)}")


def _check_tensor(value, key: str, what: str) -> None:
    if not torch.is_tensor(value):
        raise AvaeError(f"model.{key} returns a {type(value).__name__}; it must return one tensor of {what}")
    if not value.is_floating_point():
        raise AvaeError(f"model.{key} returns {value.dtype} {what}; it must return floating-point {what}")
