"""A model made from a configuration: its networks built, its initial weights seeded."""
from __future__ import annotations

import zlib

import numpy as np
import torch

from .. import schema
from ..data import Dataset
from ..errors import AvaeError
from ..user_nets import GivenNetworks, UserNetworks, is_given
from .base import MODELS, DataSpec, Model, ModelSettings, check_model_section


def build_model(section: dict, spec: DataSpec) -> Model:
    """A model from a `model` section's mapping (checked; defaults for what it leaves out)."""
    values = check_model_section(section)
    common = schema.fields(ModelSettings)
    settings = ModelSettings(**{k: v for k, v in values.items() if k in common})
    return _build(settings, MODELS[settings.name].Params(**{k: v for k, v in values.items() if k not in common}), spec)


def _build(settings: ModelSettings, params, spec: DataSpec, networks: GivenNetworks | None = None) -> Model:
    arch = settings.arch
    if networks is not None:
        arch = networks
    elif is_given(settings):
        raise AvaeError("this model's networks were given as instances: open its run with avae.load(RUN, trust_code=True)")
    elif settings.encoder is not None or settings.decoder is not None:  # the user's networks replace arch
        arch = UserNetworks.from_config(settings.encoder, settings.decoder)
    return MODELS[settings.name](spec, settings.latent_dim, arch, settings.width, params)


def data_spec(data: Dataset) -> DataSpec:
    """What a model must know about a dataset."""
    return DataSpec(shape=tuple(data.shape), likelihood=data.likelihood, value_range=tuple(data.value_range),
                    train_size=len(data.train), has_factors=data.factor_grid is not None)


def initial_seed(cfg) -> int:
    """torch's seed for a model's initial weights, from train.seed and the model's name: models trained
    at one seed start from independent draws, so one unlucky draw is not shared by every model with
    the same networks (the data subset and order stay common to all models at a seed)."""
    name = cfg.model.name
    return int(np.random.SeedSequence([cfg.train.seed, zlib.crc32(name.encode())]).generate_state(1)[0])


def new_model(cfg, spec: DataSpec, networks: GivenNetworks | None = None) -> Model:
    """The model of a Config with its initial weights (`networks`: those given as instances); torch's
    global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(initial_seed(cfg))
        return _build(cfg.model, cfg.params, spec, networks)


def seeded_model(cfg, data: Dataset, networks: GivenNetworks | None = None) -> Model:
    """A new model for training: its initial weights (unless `networks` are given as instances), and
    torch's global noise stream after them (VAE noise, prior draws; checkpoints save and restore it),
    follow from train.seed and the model."""
    torch.manual_seed(initial_seed(cfg))
    return _build(cfg.model, cfg.params, data_spec(data), networks)
