"""The AVAE's KDE bandwidth: h_opt(l, m), its bias correction, and an on-disk cache.

h_opt maximises J(h) = E_{z~N(0,I)} log q_h(z), where q_h is a Gaussian KDE over m samples of
N(0, I) (the paper's §2.1 objective, i.e. argmin_h KL(p ‖ q_h)). J is estimated on fixed draws
(m centres, n quasi-random targets) and maximised over log h by grid passes and a parabola: a
root of dJ/dh alone is not enough, since at l ≤ 2 the estimated J has a second stationary point.

Bias correction: training with a kernel of width h shrinks the aggregate posterior to
N(0, (1−h²)I); requiring self-consistency gives h = h_opt/√(1+h_opt²) and sampling std
√(1−h²) = 1/√(1+h_opt²).
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from . import schema
from .atomic import save_file
from .data.files import cache_root
from .errors import AvaeError
from .kde import squared_distances

CACHE_VERSION = 2
TARGET_PAIRS = 1e7  # target × centre pairs: n = TARGET_PAIRS / m targets, within the bounds below
MIN_TARGETS, MAX_TARGETS = 2048, 8192
CHUNK_PAIRS = 4e6  # pairs held in memory at once (float32: 16 MB)
H_BOUNDS = (1e-3, 10.0)
MAX_CENTRE_VALUES = 2**27  # m·l float64 centres: 1 GiB
LOW_DIM_DRAWS = 8
GRID_POINTS = 9  # per pass; the first pass spans ×1/4 … ×4 around a rule-of-thumb guess


@dataclass(frozen=True)
class Bandwidth:
    latent_dim: int
    kde_size: int
    h_opt: float  # maximiser of E_p log q_h
    h: float  # bias-corrected bandwidth used in training
    sampling_std: float  # generation draws z ~ N(0, sampling_std² I)
    seed: int
    n_targets: int  # per draw
    draws: int  # draws of centres and targets averaged in the objective


def corrected(h_opt: float) -> tuple[float, float]:
    """(h, sampling std) from h_opt: h = h_opt/√(1+h_opt²), std = √(1−h²)."""
    alpha = 1.0 / math.sqrt(1.0 + h_opt * h_opt)
    return h_opt * alpha, alpha


def sizes(latent_dim: int, kde_size: int) -> tuple[int, int]:
    """(targets per draw, draws of centres). At l ≤ 2 log q in the tails, where centres are few,
    dominates J, so h_opt of one draw of centres scatters by a factor of 3: average J over 8 draws
    (of fewer quasi-random targets each, which suffice in one or two dimensions)."""
    n = 2 ** round(math.log2(min(MAX_TARGETS, max(MIN_TARGETS, TARGET_PAIRS / kde_size))))  # Sobol: powers of 2
    draws = LOW_DIM_DRAWS if latent_dim <= 2 else 1
    return n // draws, draws


def rule_of_thumb(latent_dim: int, kde_size: int) -> float:
    """Silverman's rule for N(0, I) data, (4/(l+2))^(1/(l+4)) · m^(−1/(l+4)): the search's starting point."""
    return (4 / (latent_dim + 2) / kde_size) ** (1 / (latent_dim + 4))


class Objective:
    """J(log h) up to a constant: mean over draws and targets of log Σ_j exp(−‖z−c_j‖²/2h²) − l log h.

    Each draw has m centres from N(0, I) and its own targets: a scrambled Sobol sequence mapped
    through the normal quantile (far less noisy than random targets at low l), widened to
    N(0, (1+1/l)I) and weighted back to N(0, I), because the tails, where centres are few and
    log q is very negative for a narrow kernel, weigh heavily in J at low l.
    """

    def __init__(self, latent_dim: int, kde_size: int, seed: int, n_targets: int, draws: int):
        from scipy import stats  # imported on estimating, which is rare (cached), not with the module
        from scipy.stats import qmc

        self.latent_dim = latent_dim
        gen = torch.Generator().manual_seed(seed)
        widening = 1 + 1 / latent_dim  # variance of the targets' distribution
        self.draws = []
        for d in range(draws):
            centres = torch.randn(kde_size, latent_dim, generator=gen, dtype=torch.float64)
            sobol = qmc.Sobol(latent_dim, scramble=True, seed=np.random.default_rng([seed, d]))
            targets = stats.norm.ppf(np.clip(sobol.random(n_targets), 1e-12, 1 - 1e-12)) * math.sqrt(widening)
            log_w = -0.5 * (targets**2).sum(1) * (1 - 1 / widening)  # N(0, I) over N(0, widening·I), unnormalised
            weights = np.exp(log_w - log_w.max())
            self.draws.append((centres, torch.as_tensor(targets), torch.as_tensor(weights / weights.sum())))
        self.rows = max(1, int(CHUNK_PAIRS // kde_size))

    def __call__(self, log_hs: np.ndarray) -> np.ndarray:
        """J at every point of `log_hs`, in one pass over the distance matrix."""
        log_hs = torch.as_tensor(log_hs, dtype=torch.float64)
        scales = (-0.5 * torch.exp(-2 * log_hs)).float()
        total = torch.zeros(len(log_hs), dtype=torch.float64)
        for centres, targets, weights in self.draws:
            for chunk, w in zip(targets.split(self.rows), weights.split(self.rows)):
                d2 = squared_distances(chunk, centres).float()
                total += torch.stack([torch.logsumexp(d2 * s, 1).double() @ w for s in scales])
        return (total / len(self.draws) - self.latent_dim * log_hs).numpy()


def estimate_h_opt(latent_dim: int, kde_size: int, seed: int = 0, n_targets: int | None = None,
                   draws: int | None = None) -> float:
    """argmax_h of the estimated E_p log q_h.

    A grid in log h around the rule of thumb moves until its best point is inside it; a finer grid
    between that point's neighbours and a parabola through the best three give the maximiser.
    """
    check_sizes(latent_dim, kde_size, seed)
    default_n, default_draws = sizes(latent_dim, kde_size)
    objective = Objective(latent_dim, kde_size, seed, n_targets or default_n, draws or default_draws)
    lo_bound, hi_bound = map(math.log, H_BOUNDS)
    centre, half_width = math.log(rule_of_thumb(latent_dim, kde_size)), math.log(4.0)
    while True:
        grid = np.linspace(max(centre - half_width, lo_bound), min(centre + half_width, hi_bound), GRID_POINTS)
        best = int(np.argmax(objective(grid)))
        at_bound = (best == 0 and grid[0] <= lo_bound) or (best == len(grid) - 1 and grid[-1] >= hi_bound)
        if 0 < best < len(grid) - 1 or at_bound:
            break
        centre = grid[best]
    if at_bound:
        return math.exp(grid[best])
    fine = np.linspace(grid[best - 1], grid[best + 1], GRID_POINTS)
    values = objective(fine)
    i = int(np.clip(np.argmax(values), 1, len(fine) - 2))
    return math.exp(_parabola_vertex(fine[i - 1 : i + 2], values[i - 1 : i + 2]))


def _parabola_vertex(x: np.ndarray, y: np.ndarray) -> float:
    """Maximiser of the parabola through three equally spaced points (the middle one if it is flat)."""
    step, curvature = x[1] - x[0], y[0] - 2 * y[1] + y[2]
    if curvature >= 0:
        return float(x[int(np.argmax(y))])
    return float(x[1] + step * (y[0] - y[2]) / (2 * curvature))


def bandwidth(latent_dim: int, kde_size: int, seed: int = 0, cache: bool = True, progress: bool = False) -> Bandwidth:
    """h_opt and its corrections for (l, m), read from or written to the on-disk cache; `progress`
    says on stderr when it has to be estimated (seconds, not milliseconds)."""
    check_sizes(latent_dim, kde_size, seed)
    n, draws = sizes(latent_dim, kde_size)
    key = f"v{CACHE_VERSION}/l={latent_dim}/m={kde_size}/seed={seed}/targets={n}/draws={draws}"
    entries = read_json_cache(cache_path()) if cache else {}
    if key not in entries:
        if progress:
            print(f"estimating h_opt for l={latent_dim}, m={kde_size} ({n * draws:,} targets against {kde_size:,} "
                  f"centres; {'cached afterwards in ' + str(cache_path()) if cache else 'not cached'})",
                  file=sys.stderr, flush=True)
        entries[key] = estimate_h_opt(latent_dim, kde_size, seed, n, draws)
        if cache:
            write_json_cache(cache_path(), entries)
    h_opt = entries[key]
    h, std = corrected(h_opt)
    return Bandwidth(latent_dim, kde_size, h_opt, h, std, seed, n, draws)


def check_sizes(latent_dim: int, kde_size: int, seed: int = 0) -> None:
    """The arguments' types and the ranges the estimate can honour, in one line each."""
    schema.check_value("latent_dim", latent_dim, int, schema.LATENT_DIM)
    schema.check_value("kde_size", kde_size, int, schema.KDE_SIZE)
    schema.check_value("seed", seed, int, schema.SEED)
    if latent_dim * kde_size > MAX_CENTRE_VALUES:
        raise AvaeError(f"latent_dim × kde_size = {latent_dim * kde_size:,} is more than the {MAX_CENTRE_VALUES:,} "
                        "centre coordinates the estimate holds in memory; use a smaller m or l")


def cache_path() -> Path:
    return cache_root() / "bandwidth.json"


def read_json_cache(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # no cache yet, or an unreadable one: recompute and rewrite it


def write_json_cache(path: Path, entries: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(lambda tmp: tmp.write_text(json.dumps(entries, indent=1, sort_keys=True)), path)
    except OSError:
        pass  # a read-only home must not stop training; the value is simply recomputed


def as_dict(bw: Bandwidth) -> dict:
    return asdict(bw)

