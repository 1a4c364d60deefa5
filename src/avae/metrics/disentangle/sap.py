"""SAP (disentanglement_lib `sap_score`)."""
from __future__ import annotations

import numpy as np

from .common import (
    ENCODE_BATCH, Represent, check_data, classifier_seed, fits_quietly, jsonable, metric_sizes, phase_stream,
    result_params, root_entropy, sample_points,
)


def sap_from_codes(train_codes, train_factors, test_codes, test_factors, continuous_factors: bool = False,
                   random_state: int = 0) -> dict:
    """SAP: S[i, j] = test accuracy of LinearSVC(C=0.01, class_weight="balanced", dual=False) on code i alone
    for factor j
    (or, with `continuous_factors`, cov(z_i, v_j)² / (var z_i · var v_j) on the training points, 0 when
    var z_i ≤ 1e-12); SAP = mean over factors of the gap between the two best codes (one code: the best)."""
    from sklearn.svm import LinearSVC

    train_codes, test_codes = np.asarray(train_codes, np.float64), np.asarray(test_codes, np.float64)
    train_factors, test_factors = np.asarray(train_factors), np.asarray(test_factors)
    num_codes, num_factors = train_codes.shape[1], train_factors.shape[1]
    scores = np.zeros((num_codes, num_factors))

    def fit_all():
        for i in range(num_codes):
            for j in range(num_factors):
                if continuous_factors:
                    cov = np.cov(train_codes[:, i], train_factors[:, j].astype(np.float64), ddof=1)
                    scores[i, j] = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1]) if cov[0, 0] > 1e-12 else 0.0
                else:
                    model = LinearSVC(C=0.01, class_weight="balanced", dual=False, random_state=random_state)
                    model.fit(train_codes[:, i:i + 1], train_factors[:, j])
                    scores[i, j] = np.mean(model.predict(test_codes[:, i:i + 1]) == test_factors[:, j])

    _, not_converged = fits_quietly(fit_all)
    ordered = np.sort(scores, axis=0)[::-1]
    second = ordered[1] if num_codes > 1 else np.zeros(num_factors)
    return {"sap": float(np.mean(ordered[0] - second)), "score_matrix": scores, "not_converged": not_converged}


def sap_score(data, represent: Represent, seed, *, preset: str = "default", num_train: int | None = None,
              num_test: int | None = None, continuous_factors: bool | None = None,
              encode_batch: int = ENCODE_BATCH) -> dict:
    """SAP on `num_train` / `num_test` random points (default 10,000 / 5,000), discrete factors."""
    check_data(data)
    sizes = metric_sizes("sap", preset, {"num_train": num_train, "num_test": num_test,
                                   "continuous_factors": continuous_factors})
    entropy = root_entropy(seed)
    train_z, train_v = sample_points(data, represent, sizes["num_train"], phase_stream(entropy, "sap/train"), encode_batch)
    test_z, test_v = sample_points(data, represent, sizes["num_test"], phase_stream(entropy, "sap/test"), encode_batch)
    rs = classifier_seed(entropy, "sap/classifier")
    result = sap_from_codes(train_z, train_v, test_z, test_v, sizes["continuous_factors"], random_state=rs)
    return jsonable({"score": result["sap"], **result, "num_encoded": sizes["num_train"] + sizes["num_test"],
                      "params": result_params(preset, seed, sizes, classifier_random_state=rs)})
