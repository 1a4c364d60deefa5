"""FactorVAE score (disentanglement_lib `factor_vae_score`, prune_dims.threshold = 0.05)."""
from __future__ import annotations

import numpy as np

from ...errors import AvaeError
from .common import (
    ENCODE_BATCH, Represent, accuracy_standard_error, check_data, fixed_factor_draw, jsonable, metric_sizes, phase_stream,
    result_params, root_entropy, run_votes, sample_points,
)


def prune_dims(variances: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """Active code dimensions: sqrt(variance) ≥ threshold."""
    return np.sqrt(np.asarray(variances, dtype=np.float64)) >= threshold


def _vote_matrix(local_variances, labels, global_variances, active, num_factors) -> np.ndarray:
    ratio = np.asarray(local_variances)[:, active] / np.asarray(global_variances)[active]
    winners = np.flatnonzero(active)[np.argmin(ratio, axis=1)]  # the winning dimension's own index
    votes = np.zeros((num_factors, len(active)), dtype=np.int64)
    np.add.at(votes, (np.asarray(labels, dtype=np.int64), winners), 1)
    return votes


def factor_vae_from_variances(global_variances, train_local_variances, train_labels, eval_local_variances,
                              eval_labels, num_factors: int, prune_threshold: float = 0.05) -> dict:
    """FactorVAE score from per-vote local variances (votes, d) and the global variance (d,).

    Each vote goes to the active dimension with the smallest local/global variance ratio; the
    classifier gives each dimension the factor with most training votes (ties: lowest factor index);
    accuracy = votes agreeing with the classifier / all votes. No active dimension → scores 0.
    """
    global_variances = np.asarray(global_variances, dtype=np.float64)
    active = prune_dims(global_variances, prune_threshold)
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0, "active_dims": active,
                "global_variances": global_variances}
    train_votes = _vote_matrix(train_local_variances, train_labels, global_variances, active, num_factors)
    eval_votes = _vote_matrix(eval_local_variances, eval_labels, global_variances, active, num_factors)
    classifier = np.argmax(train_votes, axis=0)
    columns = np.arange(train_votes.shape[1])
    return {"train_accuracy": float(train_votes[classifier, columns].sum() / train_votes.sum()),
            "eval_accuracy": float(eval_votes[classifier, columns].sum() / eval_votes.sum()),
            "num_active_dims": int(active.sum()), "active_dims": active, "global_variances": global_variances,
            "classifier": classifier, "train_votes": train_votes}


def factor_vae_from_codes(variance_codes, train_codes, train_labels, eval_codes, eval_labels, num_factors: int,
                          prune_threshold: float = 0.05) -> dict:
    """FactorVAE score from codes: `variance_codes` (n, d) random points; vote codes (votes, batch, d)."""
    return factor_vae_from_variances(
        np.var(np.asarray(variance_codes, dtype=np.float64), axis=0, ddof=1),
        np.var(np.asarray(train_codes, dtype=np.float64), axis=1, ddof=1), train_labels,
        np.var(np.asarray(eval_codes, dtype=np.float64), axis=1, ddof=1), eval_labels,
        num_factors, prune_threshold)


def factor_vae_score(data, represent: Represent, seed, *, preset: str = "default", batch_size: int | None = None,
                     num_train: int | None = None, num_eval: int | None = None,
                     num_variance_estimate: int | None = None, prune_threshold: float | None = None,
                     encode_batch: int = ENCODE_BATCH) -> dict:
    """FactorVAE score: votes of `batch_size` images sharing one factor; majority-vote classifier.

    Cost: num_variance_estimate + (num_train + num_eval) × batch_size encodings (970,000 by default).
    """
    num_factors = len(check_data(data))
    sizes = metric_sizes("factor_vae", preset, {"batch_size": batch_size, "num_train": num_train, "num_eval": num_eval,
                                          "num_variance_estimate": num_variance_estimate,
                                          "prune_threshold": prune_threshold})
    b = sizes["batch_size"]
    if b < 2:
        raise AvaeError("factor_vae: batch_size must be at least 2 (a variance per vote)")
    entropy = root_entropy(seed)
    points, _ = sample_points(data, represent, sizes["num_variance_estimate"],
                               phase_stream(entropy, "factor_vae/variance"), encode_batch)
    draw = fixed_factor_draw(data, num_factors, b)

    def reduce(codes):
        return np.var(codes, axis=1, ddof=1)

    train_y, train_var = run_votes(data, represent, sizes["num_train"], b, draw, reduce,
                                phase_stream(entropy, "factor_vae/train"), encode_batch)
    eval_y, eval_var = run_votes(data, represent, sizes["num_eval"], b, draw, reduce,
                              phase_stream(entropy, "factor_vae/eval"), encode_batch)
    result = factor_vae_from_variances(np.var(points, axis=0, ddof=1), train_var, train_y, eval_var, eval_y,
                                       num_factors, sizes["prune_threshold"])
    encoded = sizes["num_variance_estimate"] + (sizes["num_train"] + sizes["num_eval"]) * b
    return jsonable({"score": result["eval_accuracy"], **result,
                      "standard_error": accuracy_standard_error(result["eval_accuracy"], sizes["num_eval"]),
                      "num_encoded": encoded,
                      "params": result_params(preset, seed, sizes)})
