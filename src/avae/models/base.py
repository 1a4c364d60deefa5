"""The model interface, its training hooks, and the registry that maps names to classes.

A model owns its networks, its loss and its sampler. The trainer only calls the methods below;
anything model-specific (the AVAE's KDE refresh and σ update, a discriminator's own step)
happens inside the hooks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .. import nets, schema
from ..errors import AvaeError
from ..likelihood import Likelihood
from ..schema import setting


@dataclass(frozen=True)
class DataSpec:
    """What a model must know about its data (kept in the run directory, so no data are
    needed to rebuild a trained model)."""

    shape: tuple[int, int, int]
    likelihood: str
    value_range: tuple[float, float]
    train_size: int
    has_factors: bool = False


@dataclass
class ModelSettings:
    """The settings every model has (its Params add its own)."""

    name: str = setting("avae")
    latent_dim: int = setting(16, minimum=1)
    arch: str | None = setting(None)  # None: the paper's network for the image size
    width: float = setting(1.0, above=0)  # channel and hidden widths scaled by this


class Model(nn.Module):
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    sampler: ClassVar[str] = "prior N(0, I)"  # how generation draws codes, in words
    codes_per_latent: ClassVar[int] = 1  # 2 for Gaussian encoders (mean and log-variance)
    divergence_hint: ClassVar[str] = ""  # what else may make the loss non-finite (named when training diverges)

    @dataclass
    class Params:
        """Model-specific settings (a subclass replaces this with its own dataclass)."""

    def __init__(self, spec: DataSpec, latent_dim: int, arch: str | None, width: float, params):
        super().__init__()
        self.spec, self.latent_dim, self.params = spec, latent_dim, params
        self.arch = arch or nets.default_arch(spec.shape, spec.has_factors)
        self.likelihood = Likelihood(spec.likelihood, spec.value_range)
        self.encoder, self.decoder = nets.build(
            self.arch, spec.shape, latent_dim, latent_dim * self.codes_per_latent, width, spec.value_range
        )

    # --- what every model provides -------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The deterministic code of x (the posterior mean for Gaussian encoders)."""
        return self.encoder(x)[:, : self.latent_dim]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images in the data's value range."""
        return self.likelihood.mean(self.decoder(z))

    def training_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Scalars for logging; 'loss' is the one minimised."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The training loss (what DistributedDataParallel wraps)."""
        return self.training_loss(x)

    def validation_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Batch means: 'recon' (per-image cost), 'loss' (selects the best checkpoint),
        'objective' (drives the learning-rate schedule); 'z' carries the codes."""
        raise NotImplementedError

    def sample_latent(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=generator)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        z = self.sample_latent(n, generator).to(self.device)
        return self.decode(z)

    @property
    def latent_variance(self) -> float:
        """Variance per axis of the sampling distribution (the ‖z‖² reference is this × χ²_l)."""
        return 1.0

    @property
    def sampling_distribution(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, covariance) of the Gaussian generation draws codes from (float64, on the CPU)."""
        eye = torch.eye(self.latent_dim, dtype=torch.float64)
        return torch.zeros(self.latent_dim, dtype=torch.float64), self.latent_variance * eye

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # --- hooks the trainer calls (no-ops unless a model needs them) -------------------------
    checkpoint_alignment: int = 1  # mid-epoch checkpoints only at steps that are multiples of this

    def resolve_auto(self, choices: dict) -> dict:
        """Make this model's settings left at `auto` concrete from `avae.hardware.fastest`'s
        choices; returns them ({setting: value}) for the run's config."""
        return {}

    def on_epoch_start(self, trainer, order):
        """Receives this epoch's shuffled training indices; returns those to take SGD steps on."""
        return order

    def on_step_start(self, trainer, step: int) -> None: ...

    def after_step(self, trainer, x: torch.Tensor) -> None: ...

    def on_validation_end(self, trainer, val: dict) -> None: ...

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
        raise AvaeError(f"model '{name}' has no setting {', '.join(unknown)}; its settings are: "
                        f"{', '.join(sorted(own)) or 'none'} (and {', '.join(common)})")
    return schema.check_fields("model", {**common, **own}, values)


def build_model(config: dict, spec: DataSpec) -> Model:
    """A model from the `model` section of a config."""
    values = check_model_section(config)
    cls = MODELS[values["name"]]
    settings = ModelSettings(**{k: v for k, v in values.items() if k in schema.fields(ModelSettings)})
    params = cls.Params(**{k: v for k, v in values.items() if k not in schema.fields(ModelSettings)})
    return cls(spec, settings.latent_dim, settings.arch, settings.width, params)
