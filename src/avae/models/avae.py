"""The Aggregate VAE: a deterministic autoencoder whose aggregate posterior, a Gaussian KDE over
the codes of m training images, is pulled towards N(0, I) by a KL estimate (paper §1–§4)."""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from .. import nets, schema
from ..errors import AvaeError
from ..objective import AggregateKL, sigma_from_validation
from .base import Model, register_model
from ..schema import setting


@register_model
class AVAE(Model):
    name = "avae"
    description = "Aggregate VAE: KDE aggregate posterior matched to N(0,I), σ set from validation error"
    sampler = "N(0, (1−h²)I) with the bias-corrected bandwidth h"
    divergence_hint = " or model.sigma0_sq (σ₀²) too small"

    @dataclass(frozen=True)
    class Params:
        kde_size: int = setting(10000, **schema.KDE_SIZE)  # m, images in the KDE set (redrawn every epoch)
        kde_refresh_every: int = setting(10, minimum=1)  # k, steps between re-encodings of the KDE set
        sigma0_sq: float = setting(200.0, above=0)  # σ₀², the first epoch's reconstruction scale
        density_floor_quantile: float | None = setting(1 - 1e-6, above=0, below=1)  # c of the floor ε; None: no floor
        kl_log_base: float = setting(10.0, above=1)  # the authors' code uses log10
        # the authors' code uses p(z) + 1e-30, which leaves far codes no gradient
        prior_floor: float | None = setting(None, above=0, below=1)
        # re-encoding the KDE set: float32, bfloat16 (autocast), auto (the trainer picks)
        kde_precision: str = setting("auto", choices=("auto", "float32", "bfloat16"))
        kde_channels_last: bool | None = setting(None)  # its memory layout; null: auto
        kde_batch: int | None = setting(None, minimum=1)  # images per encoder call; null: auto
        bandwidth_seed: int = setting(0, **schema.SEED)

    def __init__(self, spec, latent_dim, arch, width, params: Params):
        super().__init__(spec, latent_dim, arch, width, params)
        p = params
        if not 2 <= p.kde_size < spec.train_size:
            raise AvaeError(
                f"model.kde_size m={p.kde_size} must be at least 2 and smaller than the training set "
                f"({spec.train_size} images); lower model.kde_size or use more data"
            )
        self.kl = AggregateKL(latent_dim, p.kde_size, log_base=p.kl_log_base, density_floor_quantile=p.density_floor_quantile,
                              prior_floor=p.prior_floor, bandwidth_seed=p.bandwidth_seed, check_finite=False)
        self.bandwidth, self.h = self.kl.bandwidth, self.kl.h
        self.checkpoint_alignment = p.kde_refresh_every
        self.register_buffer("sigma", torch.tensor(math.sqrt(p.sigma0_sq), dtype=torch.float64))
        self.kde_images = None  # uint8 images of this epoch's KDE set
        self.kde_codes = None  # their codes from the last refresh (constants)
        self.refresh_seconds = 0.0

    # --- loss -----------------------------------------------------------------------------
    def _losses(self, x):
        if self.kde_codes is None:
            raise AvaeError("the AVAE's loss needs KDE codes: call refresh_kde_codes first, or use avae.AggregateKL "
                            "with codes of your own")
        z = self.encoder(x)
        recon = self.likelihood.per_image(self.decoder(z), x).mean()
        return z, recon, self.kl(z, self.kde_codes)

    def training_loss(self, x):
        z, recon, kl = self._losses(x)
        return {"loss": recon / float(self.sigma) + kl, "recon": recon, "kl": kl, "z": z}

    def validation_loss(self, x):
        z, recon, kl = self._losses(x)
        # the best checkpoint is chosen on recon/σ + KL, the learning rate follows recon + KL
        return {"loss": recon / float(self.sigma) + kl, "objective": recon + kl, "recon": recon, "kl": kl, "z": z}

    # --- hooks ----------------------------------------------------------------------------
    def resolve_auto(self, choices):
        chosen = {name: choices[choice] for name, auto, choice in (
            ("kde_precision", "auto", "inference_precision"),
            ("kde_channels_last", None, "inference_channels_last"),
            ("kde_batch", None, "inference_batch")) if getattr(self.params, name) == auto}
        self.params = dataclasses.replace(self.params, **chosen)
        return chosen

    def on_epoch_start(self, ctx, order):
        """A fresh KDE set of m training images each epoch; SGD runs on the others."""
        m = self.params.kde_size
        self.kde_images = ctx.train_images.images(order[:m]).to(ctx.device)
        self.refresh_seconds = 0.0
        return order[m:]

    def on_step_start(self, ctx, step):
        if step % self.params.kde_refresh_every == 0:
            self.refresh_kde_codes(ctx)

    def refresh_kde_codes(self, ctx):
        """Re-encode the KDE set with an inference copy of the current encoder (BatchNorm on its
        running statistics, folded into the convolutions), in the precision, memory layout and
        calls of kde_batch images that suit this machine (layout and call size change no code
        beyond float32 rounding).

        Under torchrun each rank encodes its share and all ranks gather the same m codes.
        """
        start = time.perf_counter()
        p = self.params
        layout = torch.channels_last if p.kde_channels_last else torch.contiguous_format
        encoder = nets.inference_encoder(self.encoder).to(memory_format=layout)
        mine = ctx.dist.shard(np.arange(len(self.kde_images)))
        with torch.inference_mode(), torch.autocast(ctx.device.type, dtype=torch.bfloat16,
                                                    enabled=p.kde_precision == "bfloat16"):
            codes = [encoder(ctx.prepare(self.kde_images[mine[i : i + p.kde_batch]], layout)).float()
                     for i in range(0, len(mine), p.kde_batch)]
            codes = ctx.dist.gather_rows(torch.cat(codes))
        self.kde_codes = codes.clone()  # cloned outside inference mode, so autograd may save it
        if codes.is_cuda:  # a GPU runs behind the host: wait, so that the time is the re-encoding's
            torch.cuda.synchronize(codes.device)
        self.refresh_seconds += time.perf_counter() - start

    def on_validation_end(self, ctx, val):
        """σ ← √(mean per-image validation reconstruction cost), used for the whole next epoch."""
        self.sigma.fill_(sigma_from_validation(val["recon"]))

    def epoch_summary(self):
        return {"sigma": float(self.sigma), "h": self.h, "h_opt": self.bandwidth.h_opt, "kde_refresh_s": self.refresh_seconds}

    # --- generation -----------------------------------------------------------------------
    def sampling_gaussian(self):
        return torch.zeros(self.latent_dim), self.kl.sampling_std * torch.eye(self.latent_dim)

    @property
    def latent_variance(self):
        return self.bandwidth.sampling_std**2
