"""Shared by every disentanglement metric: presets, per-phase random streams, encoding, sklearn quieting."""
from __future__ import annotations

import warnings
import zlib
from typing import Callable

import numpy as np
import torch

from ...errors import AvaeError


Represent = Callable[[torch.Tensor], "np.ndarray"]

# Sizes per metric. "default": disentanglement_lib (unsupervised_study_v1 gin configs) and, for the
# PCA metrics, the companion paper's code (L = 10,000 images per vote; 10,000 train / 5,000 eval votes;
# PCA-MIG with 10 bins over 10,000 points). "fast" (about 250,000 encodings in all): the vote-accuracy
# scores keep enough eval votes for a binomial standard error ≤ 0.0224 (BetaVAE, FactorVAE: 500) and
# ≤ 0.0354 (PCA-FactorVAE: 200; each result reports its own), with the per-vote batch of the default
# (64) so the score means the same; 500 train votes fit BetaVAE's 6-d logistic regression and
# FactorVAE's majority vote. DCI, MIG and SAP keep disent's fast sizes (1000/500, 2000, 2000/1000).
PRESETS: dict[str, dict[str, dict]] = {
    "default": {
        "beta_vae": {"batch_size": 64, "num_train": 10_000, "num_eval": 5_000},
        "factor_vae": {"batch_size": 64, "num_train": 10_000, "num_eval": 5_000,
                       "num_variance_estimate": 10_000, "prune_threshold": 0.05},
        "mig": {"num_train": 10_000, "num_bins": 20},
        "dci": {"num_train": 10_000, "num_test": 5_000},
        "sap": {"num_train": 10_000, "num_test": 5_000, "continuous_factors": False},
        # 15,000 votes × 10,000 images = 150 million encodings: follows the authors' code, costly.
        "pca_factor_vae": {"images_per_vote": 10_000, "num_train": 10_000, "num_eval": 5_000},
        # 10,000 votes × 10,000 images (100 million encodings) for the directions, + 10,000 points.
        "pca_mig": {"images_per_vote": 10_000, "num_votes": 10_000, "num_train": 10_000, "num_bins": 10},
    },
    "fast": {
        "beta_vae": {"batch_size": 64, "num_train": 500, "num_eval": 500},
        "factor_vae": {"batch_size": 64, "num_train": 500, "num_eval": 500,
                       "num_variance_estimate": 1_000, "prune_threshold": 0.05},
        "mig": {"num_train": 2_000, "num_bins": 20},
        "dci": {"num_train": 1_000, "num_test": 500},
        "sap": {"num_train": 2_000, "num_test": 1_000, "continuous_factors": False},
        "pca_factor_vae": {"images_per_vote": 128, "num_train": 200, "num_eval": 200},
        "pca_mig": {"images_per_vote": 128, "num_votes": 200, "num_train": 2_000, "num_bins": 10},
    },
}

# images per call of `represent`; results do not depend on it. On a CPU, calls whose activations
# stay in the caches run faster than larger ones (benchmarks/BENCHMARKS.md)
ENCODE_BATCH = 256


# ------------------------------------------------------------------------------------------------
# Seeds, sizes, encoding


def root_entropy(seed) -> int:
    """A non-negative integer from an int seed, or drawn from (and so consuming) a Generator."""
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63 - 1))
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and int(seed) >= 0:
        return int(seed)
    raise AvaeError(f"seed must be a non-negative int or a numpy Generator, not {seed!r}")


def phase_stream(entropy: int, phase: str) -> np.random.Generator:
    """The generator of one named phase: independent of every other phase and of chunking."""
    key = zlib.crc32(phase.encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(key,)))


def classifier_seed(entropy: int, phase: str) -> int:
    return int(phase_stream(entropy, phase).integers(0, 2**31 - 1))


def metric_sizes(metric: str, preset: str, overrides: dict) -> dict:
    if preset not in PRESETS:
        raise AvaeError(f"unknown metric preset '{preset}'; choose one of: {', '.join(PRESETS)}")
    sizes = dict(PRESETS[preset][metric])
    for name, value in overrides.items():
        if value is not None:
            sizes[name] = value
    for name, value in sizes.items():
        if name.startswith(("num_", "batch_", "images_")) and (int(value) != value or value < 1):
            raise AvaeError(f"{metric}: {name} must be a positive integer, not {value!r}")
    return sizes


def check_data(data) -> tuple[int, ...]:
    sizes = tuple(int(s) for s in data.factor_sizes)
    if not sizes:
        raise AvaeError("the ground-truth data has no factors")
    constant = [i for i, s in enumerate(sizes) if s < 2]
    if constant:
        names = getattr(data, "factor_names", None)
        which = ", ".join(str(names[i]) if names else str(i) for i in constant)
        raise AvaeError(f"factor(s) {which} take a single value; use a factor set without constant factors")
    return sizes


def as_codes(z, n: int) -> np.ndarray:
    if isinstance(z, torch.Tensor):
        z = z.detach().to("cpu", torch.float64).numpy()
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2 or z.shape[0] != n:
        raise AvaeError(f"represent must return codes of shape ({n}, d), got {z.shape}")
    if not np.isfinite(z).all():
        raise AvaeError("represent returned non-finite codes")
    return z


def encode_factors(data, represent: Represent, classes: np.ndarray, encode_batch: int) -> np.ndarray:
    """Codes (n, d) float64 of the images with the given factor classes, `encode_batch` at a time."""
    parts = []
    for start in range(0, len(classes), encode_batch):
        chunk = classes[start:start + encode_batch]
        parts.append(as_codes(represent(data.images_for_factors(chunk)), len(chunk)))
    return np.concatenate(parts, axis=0)


def sample_points(data, represent, n: int, rng, encode_batch: int) -> tuple[np.ndarray, np.ndarray]:
    factors = np.asarray(data.sample_factors(n, rng), dtype=np.int64)
    return encode_factors(data, represent, factors, encode_batch), factors


def run_votes(data, represent, num_votes: int, rows_per_vote: int, draw, reduce, rng, encode_batch: int):
    """Run `num_votes` votes: `draw(rng) -> (label, classes (rows, K))`, encode, `reduce(codes (c, rows, d))`.

    Votes are drawn one after another from `rng` (so the draws do not depend on the chunking) and
    encoded in chunks of about `encode_batch` images; only each vote's reduced statistic is kept.
    """
    per_chunk = max(1, encode_batch // rows_per_vote)
    labels, stats = [], []
    for start in range(0, num_votes, per_chunk):
        count = min(per_chunk, num_votes - start)
        drawn = [draw(rng) for _ in range(count)]
        labels.extend(label for label, _ in drawn)
        classes = np.concatenate([c for _, c in drawn], axis=0)
        codes = encode_factors(data, represent, classes, encode_batch)
        stats.append(reduce(codes.reshape(count, rows_per_vote, -1)))
    return np.asarray(labels, dtype=np.int64), np.concatenate(stats, axis=0)


def fixed_factor_draw(data, num_factors: int, rows: int):
    """One vote: factor k uniform; `rows` factor vectors that share the first one's value of k."""

    def draw(rng):
        k = int(rng.integers(num_factors))
        classes = np.array(data.sample_factors(rows, rng), dtype=np.int64)
        classes[:, k] = classes[0, k]
        return k, classes

    return draw


def fits_quietly(fits: Callable[[], object]):
    """Run sklearn fits, counting (instead of printing) their convergence warnings."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        result = fits()
    not_converged = 0
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            not_converged += 1
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return result, not_converged


def accuracy_standard_error(accuracy: float, num_eval: int) -> float:
    """Binomial standard error of an accuracy measured on `num_eval` independent votes."""
    return float(np.sqrt(accuracy * (1 - accuracy) / num_eval))


def result_params(preset: str, seed, sizes: dict, **extra) -> dict:
    import sklearn

    return {"preset": preset, "seed": seed if isinstance(seed, (int, np.integer)) else "generator",
            **sizes, **extra, "sklearn": sklearn.__version__}


def jsonable(x):
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    return x
