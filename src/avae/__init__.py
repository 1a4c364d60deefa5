"""avae: the Aggregate Variational Autoencoder and the models it is compared with.

The public API (each name imported on first use, so `import avae` stays fast):

  load(run_dir, checkpoint="last", device="cpu")    a trained model: encode, decode, reconstruct, sample
  train(config, out=None, overrides=(), callbacks=()) `avae train` from Python; returns the run directory
  evaluate(run_dir, n=10000, seed=0, ...)           `avae evaluate` from Python; returns the results dict
  bandwidth(latent_dim, kde_size)                   h_opt, the corrected h and the sampling std
  AggregateKL, sigma_from_validation                the AVAE's loss, σ rule and sampler for your own loop
  latent_fit(codes, h) → LatentFit                  codes against the sampler: KS of ‖z‖², Gaussian KLs
  Callback, RunInfo, EpochEnd                       training reports of your own
  AvaeError                                         the one exception type for a user's mistakes
"""
import importlib
import sys
import types

__version__ = "0.1.0"

_HOMES = {"load": "run", "AggregateKL": "objective", "sigma_from_validation": "objective",
          "Callback": "callbacks", "RunInfo": "callbacks", "EpochEnd": "callbacks", "AvaeError": "errors",
          "latent_fit": "metrics.latent", "LatentFit": "metrics.latent"}
_VERBS = ("train", "evaluate", "bandwidth")  # modules that are also callable as their verb
__all__ = sorted([*_HOMES, *_VERBS])


def __getattr__(name):
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    if name in _VERBS:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'avae' has no attribute '{name}'")


def __dir__():
    return [*__all__, "__version__"]


def _callable_module(module_name: str, function) -> None:
    """Make a module callable as `function`: `avae.train`, `avae.evaluate` and `avae.bandwidth` are
    both the modules (which Python binds to these names on import) and the API's verbs."""

    class VerbModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return function(*args, **kwargs)

    sys.modules[module_name].__class__ = VerbModule
