"""BetaVAE score (disentanglement_lib `beta_vae_sklearn`)."""
from __future__ import annotations

import numpy as np

from .common import (
    ENCODE_BATCH, Represent, accuracy_standard_error, check_data, classifier_seed, fits_quietly, jsonable, metric_sizes, phase_stream,
    result_params, root_entropy, run_votes,
)


def beta_vae_features(codes_a: np.ndarray, codes_b: np.ndarray) -> np.ndarray:
    """Per vote, the batch mean of |z_a − z_b|: codes (votes, batch, d) → features (votes, d)."""
    return np.mean(np.abs(np.asarray(codes_a) - np.asarray(codes_b)), axis=1)


def beta_vae_from_features(train_features, train_labels, eval_features, eval_labels, random_state: int = 0) -> dict:
    """Accuracy of sklearn's LogisticRegression (library defaults) predicting the shared factor."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(random_state=random_state)
    _, not_converged = fits_quietly(lambda: model.fit(train_features, train_labels))
    return {"train_accuracy": float(model.score(train_features, train_labels)),
            "eval_accuracy": float(model.score(eval_features, eval_labels)),
            "not_converged": not_converged}


def beta_vae_score(data, represent: Represent, seed, *, preset: str = "default", batch_size: int | None = None,
                   num_train: int | None = None, num_eval: int | None = None,
                   encode_batch: int = ENCODE_BATCH) -> dict:
    """BetaVAE score: each vote draws factor k and two batches of `batch_size` factor vectors that agree on k.

    Cost: (num_train + num_eval) × 2 × batch_size encodings (1.92 million by default).
    """
    sizes_k = check_data(data)
    sizes = metric_sizes("beta_vae", preset, {"batch_size": batch_size, "num_train": num_train, "num_eval": num_eval})
    b = sizes["batch_size"]
    num_factors = len(sizes_k)

    def draw(rng):
        k = int(rng.integers(num_factors))
        first = np.asarray(data.sample_factors(b, rng), dtype=np.int64)
        second = np.array(data.sample_factors(b, rng), dtype=np.int64)
        second[:, k] = first[:, k]
        return k, np.concatenate([first, second], axis=0)

    def reduce(codes):
        return beta_vae_features(codes[:, :b], codes[:, b:])

    entropy = root_entropy(seed)
    train_y, train_x = run_votes(data, represent, sizes["num_train"], 2 * b, draw, reduce,
                              phase_stream(entropy, "beta_vae/train"), encode_batch)
    eval_y, eval_x = run_votes(data, represent, sizes["num_eval"], 2 * b, draw, reduce,
                            phase_stream(entropy, "beta_vae/eval"), encode_batch)
    rs = classifier_seed(entropy, "beta_vae/classifier")
    result = beta_vae_from_features(train_x, train_y, eval_x, eval_y, random_state=rs)
    encoded = (sizes["num_train"] + sizes["num_eval"]) * 2 * b
    return jsonable({"score": result["eval_accuracy"], **result,
                      "standard_error": accuracy_standard_error(result["eval_accuracy"], sizes["num_eval"]),
                      "num_encoded": encoded,
                      "params": result_params(preset, seed, sizes, classifier_random_state=rs)})
