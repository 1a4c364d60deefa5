"""The sampler interface, its fit report, and the registry that maps names to classes.

A sampler is a density over a trained model's codes, fitted after training on the codes of a
fixed, seeded subset of its training images and scored on codes it never saw. Each one lives in
a file of its own with its settings (a frozen dataclass) beside it, as a model does.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from .. import schema
from ..errors import AvaeError

KS_DIRECTIONS = 64  # random unit directions of the sliced Kolmogorov–Smirnov distance


@dataclass(frozen=True)
class FitReport:
    """How well a fitted sampler matches codes it was not fitted to (the held-out codes).

    log_likelihood_per_dim: mean log density of a held-out code divided by l, in nats (higher is
      better; None for a sampler without a density, e.g. latent_diffusion).
    frechet_distance: ‖μ₁−μ₂‖² + Tr(Σ₁+Σ₂−2(Σ₁Σ₂)^½) between as many samples as held-out codes and
      the held-out codes (lower is better; it sees means and covariances only, so a full-covariance
      Gaussian already matches it up to sampling noise).
    sliced_ks: the two-sample Kolmogorov–Smirnov statistic of the samples' and the held-out codes'
      projections, averaged over 64 random unit directions (lower is better; it sees shape, such
      as a ring or clusters, that the Fréchet distance does not).
    """

    sampler: str
    codes_train: int
    codes_heldout: int
    log_likelihood_per_dim: float | None
    frechet_distance: float
    sliced_ks: float
    seconds: float
    details: dict = dataclasses.field(default_factory=dict)  # the sampler's own (iterations, epochs, ...)

    higher_is_better: ClassVar[dict] = {"log_likelihood_per_dim": True, "frechet_distance": False, "sliced_ks": False}

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """One line: the three scores on the held-out codes."""
        ll = ("log-likelihood n/a (no density)" if self.log_likelihood_per_dim is None
              else f"log-likelihood {self.log_likelihood_per_dim:.4f} nats per dimension")
        return (f"on {self.codes_heldout:,} held-out codes: {ll}, Fréchet distance {self.frechet_distance:.4g}, "
                f"sliced KS {self.sliced_ks:.4f}")


class Sampler:
    """A density over l-dimensional codes: fit, sample with an explicit generator, log density
    (where the sampler has one), and its state as plain tensors for a weights-only file."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # (module, extra) of an optional dependency: missing, building the sampler is a one-line error
    requires: ClassVar[tuple[str, str] | None] = None
    has_density: ClassVar[bool] = True
    fitted: ClassVar[bool] = True  # False for `prior`, the model's own sampler (nothing to fit or save)
    version: ClassVar[int] = 1  # raised when a change makes a saved fit of this sampler draw differently

    @dataclass(frozen=True)
    class Settings:
        """The sampler's settings (a subclass replaces this with its own frozen dataclass)."""

    def __init__(self, latent_dim: int, settings=None):
        """`settings`: the sampler's Settings, a mapping of some of them (checked), or None for the defaults."""
        if self.requires:
            need(*self.requires, self.name)
        self.latent_dim = schema.check_value("latent_dim", latent_dim, int, schema.LATENT_DIM)
        if settings is None or isinstance(settings, dict):
            settings = settings_of(type(self), settings)
        elif not isinstance(settings, self.Settings):
            raise AvaeError(f"the settings of sampler '{self.name}' must be a mapping or its Settings, "
                            f"got {schema.show(settings)}")
        self.settings = settings
        self.report: FitReport | None = None  # the report of its fit (also kept in its file)
        self.progress = False  # show a progress bar while fitting (neural samplers)

    # --- what every sampler provides ----------------------------------------------------------
    def fit(self, codes_train: torch.Tensor, codes_heldout: torch.Tensor, seed: int = 0, *,
            progress: bool = False) -> FitReport:
        """Fit to `codes_train` (n, l); score on `codes_heldout`, which the fit never sees. The same
        codes and seed give the same sampler. `progress`: a progress bar where fitting takes a while."""
        train = _codes(codes_train, self.latent_dim, "training codes", 2)
        heldout = _codes(codes_heldout, self.latent_dim, "held-out codes", 2)
        if len(train) < self.min_codes():
            raise AvaeError(f"the {self.name} sampler needs at least {self.min_codes()} training codes with its "
                            f"settings, got {len(train)}; give more codes (--codes) or change its settings")
        seed = schema.check_value("seed", seed, int, schema.SEED)
        self.progress = bool(progress)
        start = time.perf_counter()
        details = self._fit(train, seed) or {}
        seconds = time.perf_counter() - start
        self.report = FitReport(self.name, len(train), len(heldout), **quality(self, heldout, seed),
                                seconds=seconds, details=details)
        return self.report

    def min_codes(self) -> int:
        """The fewest training codes the fit accepts."""
        return 2

    def _fit(self, codes: torch.Tensor, seed: int) -> dict | None:
        """Fit to float64 codes (n, l); may return details for the report."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n codes (CPU float32); without a generator, torch's global one."""
        raise NotImplementedError

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log density of each code (float64, nats)."""
        raise AvaeError(f"the {self.name} sampler has no density (it has samples only)")

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The fitted state as plain tensors (with the settings it rebuilds the sampler)."""
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def export_tensors(self) -> dict[str, torch.Tensor] | None:
        """What `avae export` writes as sampler.pt, for sampling without avae; None: not exportable."""
        return None

    def _check_n(self, n: int) -> int:
        return schema.check_value("n", n, int, {"minimum": 0})


SAMPLERS: dict[str, type[Sampler]] = {}


def register_sampler(cls: type[Sampler]) -> type[Sampler]:
    SAMPLERS[cls.name] = cls
    return cls


def sampler_class(name) -> type[Sampler]:
    if name not in SAMPLERS:
        raise AvaeError(f"unknown sampler {schema.show(name)}; choose one of: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def settings_of(cls: type[Sampler], values: dict | None = None):
    """`cls.Settings` from a mapping, each value checked against its declared type and range."""
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise AvaeError(f"the settings of sampler '{cls.name}' must be a mapping, got {schema.show(values)}")
    declared = schema.fields(cls.Settings)
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise AvaeError(f"sampler '{cls.name}' has no setting {', '.join(map(str, unknown))}; its settings are: "
                        f"{', '.join(declared) or 'none'}")
    return cls.Settings(**schema.check_fields(cls.name, declared, values))


def need(module: str, extra: str, what: str):
    """An optional dependency, imported, or one line naming the pip command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise AvaeError(f"the {what} sampler needs {module}, which is not installed; "
                        f"pip install 'avae[{extra}]'") from None


def check_state(state: dict, shapes: dict) -> None:
    """The tensors a saved state must hold, with their shapes (a damaged file fails on loading, not later)."""
    for key, shape in shapes.items():
        value = state.get(key)
        if not torch.is_tensor(value) or tuple(value.shape) != tuple(shape):
            raise ValueError(f"'{key}' must be a tensor of shape {tuple(shape)}")


def _codes(z, latent_dim: int, what: str, min_rows: int) -> torch.Tensor:
    if not torch.is_tensor(z):
        z = torch.as_tensor(np.asarray(z))
    if z.ndim != 2 or z.shape[1] != latent_dim or len(z) < min_rows:
        raise AvaeError(f"the {what} must be an (n ≥ {min_rows}, {latent_dim}) array, got shape {tuple(z.shape)}")
    z = z.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(z).all()):
        raise AvaeError(f"the {what} hold non-finite values (NaN or inf); the model's encoder diverged")
    return z


# --- the quality of a fit --------------------------------------------------------------------
def quality(sampler: Sampler, heldout: torch.Tensor, seed: int) -> dict:
    """log_likelihood_per_dim, frechet_distance and sliced_ks of `sampler` on held-out codes."""
    from ..metrics.generative import frechet_distance

    l = sampler.latent_dim
    ll = float(sampler.log_prob(heldout).mean()) / l if sampler.has_density else None
    if ll is not None and not math.isfinite(ll):
        ll = -math.inf
    draws = torch.Generator().manual_seed(_stream(seed, 1))
    samples = sampler.sample(len(heldout), draws).double()
    if not bool(torch.isfinite(samples).all()):
        raise AvaeError(f"the {sampler.name} sampler drew non-finite codes; fit it again (another seed or settings)")
    a, b = samples.numpy(), heldout.numpy()
    return {"log_likelihood_per_dim": ll, "frechet_distance": frechet_distance(a, b),
            "sliced_ks": sliced_ks(a, b, np.random.default_rng(_stream(seed, 2)))}


def sliced_ks(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, directions: int = KS_DIRECTIONS) -> float:
    """The two-sample KS statistic sup |F_a − F_b| of the projections of a and b, averaged over
    random unit directions."""
    u = rng.standard_normal((a.shape[1], directions))
    u /= np.linalg.norm(u, axis=0, keepdims=True)
    pa, pb = np.sort(a @ u, axis=0), np.sort(b @ u, axis=0)
    stats = []
    for j in range(directions):
        points = np.concatenate([pa[:, j], pb[:, j]])
        fa = np.searchsorted(pa[:, j], points, side="right") / len(pa)
        fb = np.searchsorted(pb[:, j], points, side="right") / len(pb)
        stats.append(np.abs(fa - fb).max())
    return float(np.mean(stats))


def _stream(seed: int, stream: int) -> int:
    """A seed for one numbered stream of draws of a fit seeded by `seed`."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


# --- Gaussians in log space (gaussian, gmm and prior share them) -----------------------------
def gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor, scale_tril: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, L Lᵀ) of each row of z (n, l), float64: (n,) for one Gaussian (mean (l,),
    scale_tril (l, l)); (n, K) for K of them (mean (K, l), scale_tril (K, l, l))."""
    z, mean, scale_tril = z.double(), mean.double(), scale_tril.double()
    diff = z.T - mean.unsqueeze(-1)  # (l, n) or (K, l, n): the points as columns, one solve per Gaussian
    white = torch.linalg.solve_triangular(scale_tril, diff, upper=False)
    half_log_det = torch.log(torch.diagonal(scale_tril, dim1=-2, dim2=-1)).sum(-1, keepdim=True)
    log_p = -0.5 * white.pow(2).sum(-2) - half_log_det - 0.5 * z.shape[-1] * math.log(2 * math.pi)
    return log_p if log_p.ndim == 1 else log_p.T  # (n,) or (n, K)


def covariance_factor(cov: torch.Tensor) -> torch.Tensor:
    """The Cholesky factor of a covariance, with a jitter relative to its scale where an axis has
    collapsed (a singular covariance)."""
    cov = cov.double()
    eye = torch.eye(cov.shape[-1], dtype=torch.float64)
    jitter = 1e-9 * max(float(torch.diagonal(cov, dim1=-2, dim2=-1).mean()), 1e-12)
    for _ in range(8):
        factor, info = torch.linalg.cholesky_ex(cov + jitter * eye)
        if not bool((info != 0).any()):
            return factor
        jitter *= 100
    raise AvaeError("the codes' covariance is not positive definite even with a jitter; the codes have collapsed")
