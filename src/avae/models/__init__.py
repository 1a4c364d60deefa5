"""Every model, registered by name. Adding one is a new file here plus its import below."""
from .base import MODELS, DataSpec, Model, ModelSettings, TrainContext, check_model_section, register_model
from .building import build_model, data_spec, initial_seed, new_model, seeded_model
from . import aae, autoencoder, avae, beta_tcvae, dip_vae, factor_vae, rae, vae, vamp, wae  # noqa: F401  (registration)

__all__ = ["MODELS", "DataSpec", "Model", "ModelSettings", "TrainContext", "build_model", "check_model_section",
           "data_spec", "initial_seed", "new_model", "register_model", "seeded_model"]
