"""The AVAE's KDE bandwidth: h_opt(l, m), its bias correction, and an on-disk cache.

h_opt maximises E_{z~N(0,I)} log q_h(z), where q_h is a Gaussian KDE over m samples of N(0, I)
(the paper's §2.1 objective, i.e. argmin_h KL(p ‖ q_h)). Instead of 10,000 noisy Adam steps we
fix the samples (one KDE draw, `n_targets` target points) and solve the stationarity condition
d/d(log h) = 0, which is one-dimensional and monotone in practice: Brent's method needs ~10
passes over the distance matrix.

Bias correction: training with a kernel of width h shrinks the aggregate posterior to
N(0, (1−h²)I); requiring self-consistency gives h = h_opt/√(1+h_opt²) and sampling std
√(1−h²) = 1/√(1+h_opt²).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from scipy.optimize import brentq

from .errors import AvaeError
from .kde import squared_distances

CACHE_VERSION = 1
DEFAULT_TARGETS = 2000
MAX_PAIRS = 4e7  # bound the target × centre matrix (float32: 160 MB)


@dataclass(frozen=True)
class Bandwidth:
    latent_dim: int
    kde_size: int
    h_opt: float  # maximiser of E_p log q_h
    h: float  # bias-corrected bandwidth used in training
    sampling_std: float  # generation draws z ~ N(0, sampling_std² I)
    seed: int
    n_targets: int


def corrected(h_opt: float) -> tuple[float, float]:
    """(h, sampling std) from h_opt: h = h_opt/√(1+h_opt²), std = √(1−h²)."""
    alpha = 1.0 / math.sqrt(1.0 + h_opt * h_opt)
    return h_opt * alpha, alpha


def _target_count(latent_dim: int, kde_size: int) -> int:
    # Low dimensions have heavy-tailed log q estimates: use more targets while it stays cheap.
    n = DEFAULT_TARGETS if latent_dim > 4 else 4 * DEFAULT_TARGETS
    return int(max(500, min(n, MAX_PAIRS // kde_size)))


def estimate_h_opt(latent_dim: int, kde_size: int, seed: int = 0, n_targets: int | None = None) -> float:
    """argmax_h mean_z log q_h(z) for fixed draws of m centres and n targets from N(0, I_l)."""
    _check(latent_dim, kde_size)
    n = n_targets or _target_count(latent_dim, kde_size)
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(kde_size, latent_dim, generator=gen, dtype=torch.float64)
    targets = torch.randn(n, latent_dim, generator=gen, dtype=torch.float64)
    d2 = squared_distances(targets, centres).float()

    def slope(log_h: float) -> float:
        # d/d(log h) of mean_z [logsumexp_j(−d²/2h²) − l log h] = E_w[d²]/h² − l
        h2 = math.exp(2 * log_h)
        weights = torch.softmax(d2 * (-0.5 / h2), dim=1)
        return (weights * d2).sum(1).double().mean().item() / h2 - latent_dim

    return math.exp(brentq(slope, math.log(1e-3), math.log(10.0), xtol=1e-5))


def bandwidth(latent_dim: int, kde_size: int, seed: int = 0, cache: bool = True) -> Bandwidth:
    """h_opt and its corrections for (l, m), read from or written to the on-disk cache."""
    _check(latent_dim, kde_size)
    n = _target_count(latent_dim, kde_size)
    key = f"v{CACHE_VERSION}/l={latent_dim}/m={kde_size}/seed={seed}/targets={n}"
    entries = _read_cache() if cache else {}
    if key not in entries:
        entries[key] = estimate_h_opt(latent_dim, kde_size, seed, n)
        if cache:
            _write_cache(entries)
    h_opt = entries[key]
    h, std = corrected(h_opt)
    return Bandwidth(latent_dim, kde_size, h_opt, h, std, seed, n)


def _check(latent_dim: int, kde_size: int) -> None:
    if latent_dim < 1:
        raise AvaeError(f"latent size must be positive, got {latent_dim}")
    if kde_size < 2:
        raise AvaeError(f"KDE size m must be at least 2, got {kde_size}")


def cache_path() -> Path:
    root = os.environ.get("AVAE_CACHE_DIR") or Path.home() / ".cache" / "avae"
    return Path(root) / "bandwidth.json"


def _read_cache() -> dict:
    try:
        return json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}  # no cache yet, or an unreadable one: recompute and rewrite it


def _write_cache(entries: dict) -> None:
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            json.dump(entries, f, indent=1, sort_keys=True)
        os.replace(f.name, path)
    except OSError:
        pass  # a read-only home must not stop training; the value is simply recomputed


def as_dict(bw: Bandwidth) -> dict:
    return asdict(bw)
