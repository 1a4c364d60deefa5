"""avae: the Aggregate Variational Autoencoder and the models it is compared with.

The public API (each name imported on first use, so `import avae` stays fast). One function per
command, each doing what the command does (`avae.api`):

  train(config, out=None, overrides=(), ...)          `avae train`; returns the run directory (also takes
                                                      data= tensors, arrays or Datasets, encoder=/decoder= modules)
  resume(run_dir, callbacks=(), trust_code=False)     `avae train --resume`; returns the run directory
  evaluate(run_dir, n=10000, seed=0, ...)             `avae evaluate`; returns the results dict
  sample(run_dir, n, seed=0, sampler="prior", ...)    `avae sample`; returns uint8 images (N, C, H, W)
  export(run_dir, out=None, checkpoint="last", ...)   `avae export`; returns the folder written
  compare(run_dirs, out=None)                         `avae compare`; returns the comparison
  load(run_dir, checkpoint="last", device="cpu")      a trained model: encode, decode, reconstruct, sample
  bandwidth(latent_dim, kde_size)                     h_opt, the corrected h and the sampling std

For your own training loop and reports:

  AggregateKL, sigma_from_validation                the AVAE's loss, σ rule and sampler
  latent_fit(codes, h) → LatentFit                  codes against the sampler: KS of ‖z‖², Gaussian KLs
  Callback, RunInfo, EpochEnd                       training reports of your own
  AvaeError                                         the one exception type for a user's mistakes
"""
import importlib

__version__ = "0.1.0"

_VERBS = ("train", "resume", "evaluate", "sample", "export", "compare", "load", "bandwidth")
_HOMES = {**dict.fromkeys(_VERBS, "api"), "AggregateKL": "objective", "sigma_from_validation": "objective",
          "Callback": "callbacks", "RunInfo": "callbacks", "EpochEnd": "callbacks", "AvaeError": "errors",
          "latent_fit": "metrics.latent", "LatentFit": "metrics.latent"}
__all__ = sorted(_HOMES)


def __getattr__(name):
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'avae' has no attribute '{name}'")


def __dir__():
    return [*__all__, "__version__"]
