"""Synthetic ground truths with known answers, shared by the disentanglement tests.

The 'images' of `SyntheticFactors` store their factor classes, so a representation can be exactly
the factors, a rotation of them, noise, or an entangled mix.
"""
from __future__ import annotations

import numpy as np

from avae.metrics import disentangle as dis

DATA = dis.SyntheticFactors((3, 4, 5, 6))
SIZES = np.asarray(DATA.factor_sizes, dtype=np.float64)
K = len(SIZES)

# Small explicit sizes: the tests check the definitions, not the estimators' variance.
SMALL = {
    "beta_vae": {"batch_size": 32, "num_train": 300, "num_eval": 200},
    "factor_vae": {"batch_size": 32, "num_train": 300, "num_eval": 200, "num_variance_estimate": 1000},
    "mig": {"num_train": 2000},
    "dci": {"num_train": 400, "num_test": 200},
    "sap": {"num_train": 1000, "num_test": 500},
    "pca_factor_vae": {"images_per_vote": 48, "num_train": 120, "num_eval": 60},
    "pca_mig": {"images_per_vote": 48, "num_votes": 120, "num_train": 2000},
}


def standardised(images) -> np.ndarray:
    """The factors themselves, each with zero mean and unit variance: a perfectly disentangled code."""
    classes = DATA.read_factors(images)
    return (classes - (SIZES - 1) / 2) / np.sqrt((SIZES**2 - 1) / 12)


def noise(seed: int = 0):
    """Codes that ignore the image: no information about any factor."""
    rng = np.random.default_rng(seed)
    return lambda images: rng.normal(size=(len(images), K))


def rotated(q: np.ndarray):
    """z = f Q: every factor lies along a row of the orthogonal Q."""
    return lambda images: standardised(images) @ q


def random_rotation(seed: int, d: int = K) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


HADAMARD = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2.0  # maximally mixing
MIX = np.random.default_rng(7).normal(size=(K, 6))
TABLE = np.random.default_rng(8).normal(size=(len(DATA), 6))


def entangled(images) -> np.ndarray:
    """A deterministic function of the image: a dense mix of the factors plus per-image 'noise'."""
    return standardised(images) @ MIX + 0.5 * TABLE[DATA.index_of(DATA.read_factors(images))]


def run(metric: str, represent, seed=0, **extra) -> dict:
    return dis.METRICS[metric](DATA, represent, seed, **{**SMALL[metric], **extra})
