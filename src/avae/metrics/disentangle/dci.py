"""DCI (disentanglement_lib `dci`: gradient-boosted trees, sklearn defaults)."""
from __future__ import annotations

import math

import numpy as np

from .common import (
    ENCODE_BATCH, Represent, check_data, classifier_seed, jsonable, metric_sizes, phase_stream,
    result_params, root_entropy, sample_points,
)


def _entropy_base(p: np.ndarray, base: int, axis: int) -> np.ndarray:
    """Shannon entropy in base `base` of non-negative weights along `axis` (normalised first)."""
    p = p / p.sum(axis=axis, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=axis) / math.log(base)


def _weighted_specificity(importance: np.ndarray, axis: int) -> float:
    """Σ ρ (1 − H(importance normalised along `axis`)), entropies in base = its length, weighted by the sums."""
    importance = np.asarray(importance, dtype=np.float64)
    other = 1 - axis
    size = importance.shape[axis]
    specificity = 1.0 - _entropy_base(importance + 1e-11, size, axis=axis) if size > 1 \
        else np.ones(importance.shape[other])
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    return float(np.sum(specificity * weights.sum(axis=axis) / weights.sum()))


def dci_disentanglement(importance: np.ndarray) -> float:
    """Σ_i ρ_i (1 − H_K(P_i·)), P_i· = row i of the (codes × factors) importance matrix, normalised."""
    return _weighted_specificity(importance, axis=1)


def dci_completeness(importance: np.ndarray) -> float:
    """Σ_j ρ̃_j (1 − H_D(R_·j normalised)), with D = number of codes."""
    return _weighted_specificity(importance, axis=0)


def dci_from_codes(train_codes, train_factors, test_codes, test_factors, random_state: int = 0) -> dict:
    """DCI from codes (n, d) and factor classes (n, K): one GradientBoostingClassifier per factor.

    Importance R[i, j] = |feature_importances_| of code i for factor j; informativeness = mean
    train / test accuracy over factors. The factors' classifiers are fitted side by side on the
    available cores (their trees are built without the GIL); each is seeded alike, so the result
    does not depend on the number of cores.
    """
    from joblib import Parallel, delayed

    train_codes, test_codes = np.asarray(train_codes, np.float64), np.asarray(test_codes, np.float64)
    train_factors, test_factors = np.asarray(train_factors), np.asarray(test_factors)
    num_factors = train_factors.shape[1]
    # the factors with the most classes (one tree per class and stage) start first
    order = sorted(range(num_factors), key=lambda j: -len(np.unique(train_factors[:, j])))
    fits = dict(zip(order, Parallel(n_jobs=-1, backend="threading")(
        delayed(_fit_factor)(train_codes, train_factors[:, j], test_codes, test_factors[:, j], random_state)
        for j in order)))
    by_factor = [fits[j] for j in range(num_factors)]
    importance = np.stack([fit[0] for fit in by_factor], axis=1)
    train_acc, test_acc = [fit[1] for fit in by_factor], [fit[2] for fit in by_factor]
    return {"disentanglement": dci_disentanglement(importance), "completeness": dci_completeness(importance),
            "informativeness_train": float(np.mean(train_acc)), "informativeness_test": float(np.mean(test_acc)),
            "importance_matrix": importance}


def _fit_factor(train_codes, train_classes, test_codes, test_classes, random_state: int):
    """One factor's gradient-boosted trees: |importances| of the codes, train and test accuracy."""
    from sklearn.ensemble import GradientBoostingClassifier

    model = GradientBoostingClassifier(random_state=random_state).fit(train_codes, train_classes)
    return (np.abs(model.feature_importances_), float(np.mean(model.predict(train_codes) == train_classes)),
            float(np.mean(model.predict(test_codes) == test_classes)))


def dci_score(data, represent: Represent, seed, *, preset: str = "default", num_train: int | None = None,
              num_test: int | None = None, encode_batch: int = ENCODE_BATCH) -> dict:
    """DCI on `num_train` / `num_test` random points (default 10,000 / 5,000). Slow: one GBT per factor."""
    check_data(data)
    sizes = metric_sizes("dci", preset, {"num_train": num_train, "num_test": num_test})
    entropy = root_entropy(seed)
    train_z, train_v = sample_points(data, represent, sizes["num_train"], phase_stream(entropy, "dci/train"), encode_batch)
    test_z, test_v = sample_points(data, represent, sizes["num_test"], phase_stream(entropy, "dci/test"), encode_batch)
    rs = classifier_seed(entropy, "dci/classifier")
    result = dci_from_codes(train_z, train_v, test_z, test_v, random_state=rs)
    return jsonable({"score": result["disentanglement"], **result,
                      "num_encoded": sizes["num_train"] + sizes["num_test"],
                      "params": result_params(preset, seed, sizes, classifier_random_state=rs)})
