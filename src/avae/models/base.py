"""The model interface, its training hooks, and the registry that maps names to classes.

A model owns its networks, its loss and its sampler. The trainer only calls the methods below;
anything model-specific (the AVAE's KDE refresh and σ update, a discriminator's own step)
happens inside the hooks.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np
import torch
from torch import nn

from .. import nets, schema
from ..data.base import ImageSet
from ..distributed import Dist
from ..errors import AvaeError
from ..likelihood import Likelihood
from ..schema import setting
from ..user_nets import GivenNetworks, UserNetworks


@dataclass(frozen=True)
class DataSpec:
    """What a model must know about its data (kept in the run directory, so no data are
    needed to rebuild a trained model)."""

    shape: tuple[int, int, int]
    likelihood: str
    value_range: tuple[float, float]
    train_size: int
    has_factors: bool = False


@dataclass(frozen=True)
class ModelSettings:
    """The settings every model has (its Params add its own)."""

    name: str = setting("avae")
    latent_dim: int = setting(16, **schema.LATENT_DIM)
    arch: str | None = setting(None)  # None: the paper's network for the image size
    width: float = setting(1.0, above=0, maximum=16)  # channel and hidden widths scaled by this
    # your own networks, {class: module:Class, ...keyword arguments} each (avae.user_nets); replace arch
    encoder: object = setting(None)
    decoder: object = setting(None)


@dataclass
class TrainContext:
    """What a model's training hooks may use (the trainer makes one; a test or a user loop can too)."""

    train_images: ImageSet  # the training set (uint8 NCHW images by index)
    device: torch.device
    # uint8 images (and optionally a memory format) → the model's float input on the device
    prepare: Callable[..., torch.Tensor]
    encode_images: Callable[[ImageSet, np.ndarray], torch.Tensor]  # codes of stored images (inference mode)
    seed: int = 0
    epoch: int = 0  # the epoch under way (the trainer keeps it current)
    dist: Dist = dataclasses.field(default_factory=Dist)  # rank, world size and collectives under torchrun

    def rng(self, *stream: int) -> np.random.Generator:
        """This epoch's numpy generator for one numbered stream: the same numbers on every resume."""
        return np.random.default_rng([self.seed, self.epoch, *stream])


class Model(nn.Module):
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    sampler: ClassVar[str] = "prior N(0, I)"  # how generation draws codes, in words
    codes_per_latent: ClassVar[int] = 1  # 2 for Gaussian encoders (mean and log-variance)
    divergence_hint: ClassVar[str] = ""  # what else may make the loss non-finite (named when training diverges)
    origin = None  # avae.run.Origin where avae.load opened the model: `sample` finds its run's samplers there

    @dataclass(frozen=True)
    class Params:
        """Model-specific settings (a subclass replaces this with its own dataclass)."""

    def __init__(self, spec: DataSpec, latent_dim: int, arch: str | UserNetworks | GivenNetworks | None, width: float,
                 params):
        """`arch`: a built-in network's name (None: the paper's for the image shape), the user's classes or
        the user's networks as instances."""
        super().__init__()
        self.spec, self.latent_dim, self.params = spec, latent_dim, params
        self.likelihood = Likelihood(spec.likelihood, spec.value_range)
        outputs = latent_dim * self.codes_per_latent
        if isinstance(arch, (UserNetworks, GivenNetworks)):
            self.arch = "user"
            self.encoder, self.decoder = arch.build(spec.shape, latent_dim, outputs)
        else:
            self.arch = arch or nets.default_arch(spec.shape, spec.has_factors)
            self.encoder, self.decoder = nets.build(self.arch, spec.shape, latent_dim, outputs, width, spec.value_range)

    # --- what every model provides -------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The deterministic code of x (the posterior mean for Gaussian encoders)."""
        return self.encoder(x)[:, : self.latent_dim]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images in the data's value range."""
        return self.likelihood.mean(self.decoder(z))

    def training_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Scalars for logging ('loss' is the one minimised) and 'z', the batch's codes that the
        decoder reconstructed from (a posterior sample for Gaussian encoders)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The training loss (what DistributedDataParallel wraps)."""
        return self.training_loss(x)

    def validation_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Batch means: 'recon' (per-image cost), 'loss' (selects the best checkpoint),
        'objective' (drives the learning-rate schedule); 'z' carries the codes."""
        raise NotImplementedError

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """decode(encode(x)): the reconstruction from the deterministic code."""
        return self.decode(self.encode(x))

    # --- the densities of a latent-variable model (None where a model has none) ---------------
    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(μ, log σ²) of a Gaussian encoder q(z | x) = N(μ, diag σ²), each (B, l); None for a
        deterministic encoder (one code per image, nothing to draw from)."""
        return None

    def log_prior(self, z: torch.Tensor) -> torch.Tensor | None:
        """log p(z) (B,) under the prior the model was trained with, in z's dtype; None where the
        model defines no prior density."""
        return None

    def sampling_gaussian(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, scale_tril) on the CPU of the Gaussian that generation draws codes from; the noise
        is drawn in their dtype. The prior N(0, I) unless a model says otherwise."""
        return torch.zeros(self.latent_dim), torch.eye(self.latent_dim)

    def sampling_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log density (n,) in float64 nats of each code z (n, l) under what `sample_latent` draws from:
        the Gaussian of `sampling_gaussian` unless a model says otherwise."""
        from ..samplers.base import gaussian_log_prob

        return gaussian_log_prob(z, *self.sampling_gaussian())

    def sampler_tensors(self) -> dict[str, torch.Tensor]:
        """What `avae export` writes as sampler.pt: the Gaussian's {"mean", "scale_tril"} (a model
        that samples from a mixture writes {"weights", "means", "scale_trils"})."""
        mean, scale_tril = self.sampling_gaussian()
        return {"mean": mean.clone(), "scale_tril": scale_tril.clone()}

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n codes of the model's sampler (CPU float32); without a generator, torch's global one."""
        schema.check_value("n", n, int, {"minimum": 0})
        mean, scale_tril = self.sampling_gaussian()
        eps = torch.randn(n, self.latent_dim, generator=generator, dtype=mean.dtype)
        return (mean + eps @ scale_tril.T).float()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, sampler=None) -> torch.Tensor:
        """n generated images on the model's device. `sampler`: None or 'prior' (the model's own),
        the name of a sampler fitted to this run's codes (`avae fit-sampler`; the model opened by
        avae.load), or an avae.samplers.Sampler."""
        if sampler is None:
            z = self.sample_latent(n, generator)
        else:
            from ..samplers import for_model

            z = for_model(self, sampler).sample(n, generator)
        return self.decode(z.to(self.device))

    @property
    def latent_variance(self) -> float:
        """Variance per axis of the sampling distribution (the ‖z‖² reference is this × χ²_l)."""
        return 1.0

    @property
    def sampling_distribution(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, covariance) of the Gaussian generation draws codes from (float64, on the CPU)."""
        mean, scale_tril = (t.double() for t in self.sampling_gaussian())
        return mean, scale_tril @ scale_tril.T

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # --- hooks the trainer calls (no-ops unless a model needs them) -------------------------
    checkpoint_alignment: int = 1  # mid-epoch checkpoints only at steps that are multiples of this

    def resolve_auto(self, choices: dict) -> dict:
        """Make this model's settings left at `auto` concrete from `avae.hardware.fastest`'s
        choices (self.params becomes a new Params); returns them ({setting: value}) for the run's config."""
        return {}

    def on_epoch_start(self, ctx: TrainContext, order: np.ndarray) -> np.ndarray:
        """Receives this epoch's shuffled training indices; returns those to take SGD steps on."""
        return order

    def on_step_start(self, ctx: TrainContext, step: int) -> None: ...

    def after_step(self, ctx: TrainContext, x: torch.Tensor, losses: dict[str, torch.Tensor]) -> None:
        """After the optimizer step on batch x; `losses` is what `training_loss` returned for it."""

    def on_validation_end(self, ctx: TrainContext, val: dict) -> None: ...

    def epoch_summary(self) -> dict:
        """Numbers to log with the epoch (e.g. σ, h, time spent refreshing)."""
        return {}

    def extra_state(self) -> dict:
        """State outside the parameters and buffers that a resumed run needs."""
        return {}

    def load_extra_state(self, state: dict) -> None: ...


MODELS: dict[str, type[Model]] = {}


def register_model(cls: type[Model]) -> type[Model]:
    MODELS[cls.name] = cls
    return cls


def check_model_section(values) -> dict:
    """The model section checked: a known model, and each setting against ModelSettings or the model's Params."""
    if not isinstance(values, dict):
        raise AvaeError(f"config section 'model' must be a mapping of settings, got {schema.show(values)}")
    name = values.get("name")
    if name not in MODELS:
        raise AvaeError(f"unknown model '{name}'; choose one of: {', '.join(sorted(MODELS))} (see `avae models`)")
    common, own = schema.fields(ModelSettings), schema.fields(MODELS[name].Params)
    unknown = sorted(set(values) - set(common) - set(own))
    if unknown:
        raise AvaeError(f"model '{name}' has no setting {', '.join('model.' + key for key in unknown)}; its settings are: "
                        f"{', '.join(sorted(own)) or 'none'} (and {', '.join(common)})")
    return schema.check_fields("model", {**common, **own}, values)
