"""Samplers: densities fitted to a trained model's codes after training, each an object of its
own, saved in the run directory and used by `avae sample`, `avae evaluate`, `avae export` and
`avae.load(run_dir).sample(n, sampler=NAME)`.

  prior             the model's own sampler (the default; nothing fitted)
  gaussian          a full-covariance Gaussian
  gmm               a Gaussian mixture, full covariances, K = 10 by default (scikit-learn's EM)
  flow              a normalizing flow (zuko NSF or MAF; pip install 'avae[flow]')
  latent_diffusion  an MLP denoiser with diffusers' DDPM schedule (pip install 'avae[diffusion]')

Adding one is a new file here with a `@register_sampler` class and its import below.
"""
from .base import SAMPLERS, FitReport, Sampler, register_sampler, sampler_class, settings_of, sliced_ks
from . import prior, gaussian, gmm, flow, latent_diffusion  # noqa: F401  (registration, in the order listed)
from .store import (FIT_CODES, HELDOUT, Fitted, exportable, fit_sampler, for_model, load_for_run, parse_names,
                    path_of, sample_codes)

__all__ = ["FIT_CODES", "HELDOUT", "SAMPLERS", "FitReport", "Fitted", "Sampler", "exportable", "fit_sampler",
           "for_model", "load_for_run", "parse_names", "path_of", "register_sampler", "sample_codes", "sampler_class",
           "settings_of", "sliced_ks"]
