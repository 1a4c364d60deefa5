"""MIG (disentanglement_lib `mig` with the 20-bin histogram discretiser)."""
from __future__ import annotations

import numpy as np

from ...errors import AvaeError
from .common import (
    ENCODE_BATCH, Represent, check_data, jsonable, metric_sizes, phase_stream, result_params, root_entropy,
    sample_points,
)


def histogram_discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Bin each column into `num_bins` equal-width bins over its own range (labels 1..num_bins)."""
    codes = np.asarray(codes, dtype=np.float64)
    out = np.empty(codes.shape, dtype=np.int64)
    for i in range(codes.shape[1]):
        edges = np.histogram(codes[:, i], bins=num_bins)[1]
        out[:, i] = np.digitize(codes[:, i], edges[:-1])
    return out


def _mutual_info_matrix(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    from sklearn.metrics import mutual_info_score

    return np.array([[mutual_info_score(factors[:, k], discrete_codes[:, i]) for k in range(factors.shape[1])]
                     for i in range(discrete_codes.shape[1])])


def mig_from_codes(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> dict:
    """Mutual information gap of codes (n, d) against factor classes (n, K).

    I[i, k] = mutual_info_score(v_k, binned z_i) in nats, H_k = I(v_k; v_k);
    MIG = mean over factors of (largest − second largest I[·, k]) / H_k. With one code dimension
    the second largest is taken as 0. Factors constant in the sample (H_k = 0) are left out of the mean.
    """
    codes = np.asarray(codes, dtype=np.float64)
    factors = np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
        raise AvaeError(f"mig: codes {codes.shape} and factors {factors.shape} must be (n, d) and (n, K)")
    from sklearn.metrics import mutual_info_score

    mi = _mutual_info_matrix(histogram_discretize(codes, num_bins), factors)
    entropy = np.array([mutual_info_score(factors[:, k], factors[:, k]) for k in range(factors.shape[1])])
    ordered = np.sort(mi, axis=0)[::-1]
    second = ordered[1] if len(ordered) > 1 else np.zeros_like(ordered[0])
    varies = entropy > 0
    gap = np.full(len(entropy), np.nan)
    gap[varies] = (ordered[0, varies] - second[varies]) / entropy[varies]
    mig = float(np.mean(gap[varies])) if varies.any() else 0.0
    return {"mig": mig, "mig_per_factor": gap, "mutual_info": mi, "factor_entropy": entropy}


def mig_score(data, represent: Represent, seed, *, preset: str = "default", num_train: int | None = None,
              num_bins: int | None = None, encode_batch: int = ENCODE_BATCH) -> dict:
    """MIG on `num_train` random points (default 10,000, 20 bins), as disentanglement_lib's `mig`."""
    check_data(data)
    sizes = metric_sizes("mig", preset, {"num_train": num_train, "num_bins": num_bins})
    entropy = root_entropy(seed)
    codes, factors = sample_points(data, represent, sizes["num_train"], phase_stream(entropy, "mig/points"), encode_batch)
    result = mig_from_codes(codes, factors, sizes["num_bins"])
    return jsonable({"score": result["mig"], **result, "num_encoded": len(codes), "params": result_params(preset, seed, sizes)})
