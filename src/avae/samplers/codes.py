"""The codes a sampler is fitted to: a fixed, seeded subset of a run's training images (the
training split as the run trained on it), encoded with the model's deterministic encoder in
inference mode — the code itself for deterministic autoencoders, the posterior mean for the VAE
family (what `Model.encode` returns) — and split at random into training and held-out codes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data import ImageSet, to_float
from ..errors import AvaeError

STREAM = 17  # numpy stream of the subset: default_rng([seed, STREAM])


@dataclass(frozen=True)
class Codes:
    train: torch.Tensor  # (n − h, l) float64: what the sampler is fitted to
    heldout: torch.Tensor  # (h, l) float64: what its fit report scores it on
    what: str  # "codes" or "posterior means"


def pick(n_images: int, size: int, heldout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) indices into a training split of n_images: min(size, n_images) images
    drawn without replacement by default_rng([seed, STREAM]), a `heldout` share of them held out.
    Each list is sorted (reading order); which image goes where depends only on the seed."""
    n = min(size, n_images)
    chosen = np.random.default_rng([seed, STREAM]).choice(n_images, n, replace=False)
    n_heldout = round(heldout * n)
    if n_heldout < 2 or n - n_heldout < 2:
        raise AvaeError(f"{n} codes with a held-out share of {heldout:g} leave {n - n_heldout} to fit and {n_heldout} "
                        "to score (each needs at least 2); give more codes (--codes) or another --heldout")
    return np.sort(chosen[n_heldout:]), np.sort(chosen[:n_heldout])


@torch.inference_mode()
def encode(model, images: ImageSet, indices: np.ndarray, value_range, layout=torch.contiguous_format,
           batch: int = 500) -> torch.Tensor:
    """Codes (float64, CPU) of images[indices] by the model in eval mode (`Model.encode`: the
    posterior mean for Gaussian encoders)."""
    model.eval()
    device = model.device
    codes = torch.cat([
        model.encode(to_float(images.images(indices[i : i + batch]).to(device), value_range)
                     .contiguous(memory_format=layout)).double().cpu()
        for i in range(0, len(indices), batch)
    ]) if len(indices) else torch.zeros(0, model.latent_dim, dtype=torch.float64)
    bad = int(codes.numel() - torch.isfinite(codes).sum())
    if bad:
        raise AvaeError(f"the encoder produced {bad} non-finite values (NaN or inf) in the codes of training images; "
                        "no sampler can be fitted (retrain the run, e.g. with a lower train.lr)")
    return codes


def of_images(model, images: ImageSet, value_range, *, size: int, heldout: float, seed: int,
              layout=torch.contiguous_format) -> Codes:
    """The training and held-out codes of a seeded subset of `images` (a run's training split)."""
    train_idx, heldout_idx = pick(len(images), size, heldout, seed)
    everything = np.concatenate([train_idx, heldout_idx])
    z = encode(model, images, everything, value_range, layout)
    what = "posterior means" if model.codes_per_latent == 2 else "codes"
    return Codes(train=z[: len(train_idx)], heldout=z[len(train_idx) :], what=what)
