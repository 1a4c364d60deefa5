"""The companion paper's latent directions, PCA-FactorVAE and PCA-MIG."""
from __future__ import annotations

import numpy as np

from ...errors import AvaeError
from .common import (
    ENCODE_BATCH, Represent, accuracy_standard_error, check_data, fixed_factor_draw, jsonable, metric_sizes, phase_stream,
    result_params, root_entropy, run_votes, sample_points,
)
from .mig import mig_from_codes


def _canonical_sign(vectors: np.ndarray) -> np.ndarray:
    """Flip each row so that its largest-magnitude entry is positive (a deterministic sign)."""
    vectors = np.atleast_2d(vectors)
    picks = vectors[np.arange(len(vectors)), np.argmax(np.abs(vectors), axis=1)]
    return vectors * np.where(picks < 0, -1.0, 1.0)[:, None]


def smallest_variance_directions(codes: np.ndarray) -> np.ndarray:
    """Per vote, the unit eigenvector of the smallest eigenvalue of the centred covariance.

    codes (votes, L, d) → directions (votes, d); needs L > d so the direction is determined.
    """
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim == 2:
        codes = codes[None]
    votes, length, d = codes.shape
    if length <= d:
        raise AvaeError(f"latent directions need more images per vote ({length}) than code dimensions ({d})")
    centred = codes - codes.mean(axis=1, keepdims=True)
    cov = np.matmul(centred.transpose(0, 2, 1), centred) / (length - 1)
    _, vecs = np.linalg.eigh(cov)  # ascending eigenvalues
    return _canonical_sign(vecs[:, :, 0])


def directions_from_votes(vote_directions: np.ndarray, labels: np.ndarray, num_factors: int) -> np.ndarray:
    """Per factor, the top eigenvector of the mean outer product of its votes' unit directions (K, d).

    Sign-invariant (maximises Σ (uᵀu_i)²). A factor with no vote gets a zero row.
    """
    vote_directions = np.asarray(vote_directions, dtype=np.float64)
    labels = np.asarray(labels)
    out = np.zeros((num_factors, vote_directions.shape[1]))
    for k in range(num_factors):
        u = vote_directions[labels == k]
        if len(u):
            _, vecs = np.linalg.eigh(u.T @ u / len(u))
            out[k] = vecs[:, -1]
    nonzero = np.abs(out).sum(axis=1) > 0
    out[nonzero] = _canonical_sign(out[nonzero])
    return out


def direction_angles(directions: np.ndarray) -> np.ndarray:
    """Pairwise angles (degrees, folded into [0, 90]) between direction rows; NaN for a zero row."""
    directions = np.asarray(directions, dtype=np.float64)
    norms = np.linalg.norm(directions, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        unit = directions / norms[:, None]
        cosine = np.clip(np.abs(unit @ unit.T), 0.0, 1.0)
    angles = np.degrees(np.arccos(cosine))
    np.fill_diagonal(angles, 0.0)
    angles[norms == 0, :] = np.nan
    angles[:, norms == 0] = np.nan
    return angles


def _angle_summary(angles: np.ndarray) -> dict:
    upper = angles[np.triu_indices(len(angles), k=1)]
    upper = upper[np.isfinite(upper)]
    return {"min_angle_deg": float(upper.min()) if len(upper) else float("nan"),
            "mean_angle_deg": float(upper.mean()) if len(upper) else float("nan")}


def pca_factor_vae_from_votes(train_directions, train_labels, eval_directions, eval_labels, num_factors: int) -> dict:
    """PCA-FactorVAE: train votes build D; each vote (k, u) is predicted as argmax_j (u · u*_j)²."""
    directions = directions_from_votes(train_directions, train_labels, num_factors)

    def accuracy(u, labels):
        predicted = np.argmax((np.asarray(u) @ directions.T) ** 2, axis=1)
        return float(np.mean(predicted == np.asarray(labels)))

    return {"train_accuracy": accuracy(train_directions, train_labels),
            "eval_accuracy": accuracy(eval_directions, eval_labels), "directions": directions}


def pca_mig_from_codes(codes, factors, directions, num_bins: int = 10) -> dict:
    """MIG of the projections Z Dᵀ (n, K) onto the factor directions, `num_bins` bins per coordinate."""
    projected = np.asarray(codes, dtype=np.float64) @ np.asarray(directions, dtype=np.float64).T
    return mig_from_codes(projected, factors, num_bins)


def _direction_votes(data, represent, num_votes, images_per_vote, rng, encode_batch):
    num_factors = len(data.factor_sizes)
    draw = fixed_factor_draw(data, num_factors, images_per_vote)
    return run_votes(data, represent, num_votes, images_per_vote, draw, smallest_variance_directions, rng, encode_batch)


def discover_directions(data, represent: Represent, seed, *, preset: str = "default",
                        images_per_vote: int | None = None, num_votes: int | None = None,
                        encode_batch: int = ENCODE_BATCH) -> dict:
    """The companion paper's latent-direction discovery (numpy arrays, not JSON).

    `num_votes` votes (default 10,000), each: factor k uniform, fixed at a random value, the other
    factors sampled for `images_per_vote` images (default L = 10,000), encoded, smallest-variance
    principal direction. Returns `directions` D (K, d) unit rows (zero for a factor with no vote),
    `angles_deg` (K, K), `votes_per_factor`, `vote_directions`, `vote_labels`. The same seed and sizes
    give the directions that `pca_factor_vae_score` and `pca_mig_score` use.
    Cost: num_votes × images_per_vote encodings (100 million by default).
    """
    num_factors = len(check_data(data))
    sizes = metric_sizes("pca_mig", preset, {"images_per_vote": images_per_vote, "num_votes": num_votes})
    sizes = {k: sizes[k] for k in ("images_per_vote", "num_votes")}
    labels, votes = _direction_votes(data, represent, sizes["num_votes"], sizes["images_per_vote"],
                                     phase_stream(root_entropy(seed), "directions"), encode_batch)
    directions = directions_from_votes(votes, labels, num_factors)
    return {"directions": directions, "angles_deg": direction_angles(directions),
            "votes_per_factor": np.bincount(labels, minlength=num_factors), "vote_directions": votes,
            "vote_labels": labels, "num_encoded": sizes["num_votes"] * sizes["images_per_vote"],
            "params": result_params(preset, seed, sizes)}


def pca_factor_vae_score(data, represent: Represent, seed, *, preset: str = "default",
                         images_per_vote: int | None = None, num_train: int | None = None,
                         num_eval: int | None = None, encode_batch: int = ENCODE_BATCH) -> dict:
    """PCA-FactorVAE score (a fraction in [0, 1]; the paper prints %). Train votes build D.

    Default sizes follow the authors' code: L = 10,000 images per vote, 10,000 train and 5,000 eval
    votes, i.e. 150 million encodings; use `preset="fast"` (L = 128, 200 / 200 votes) on a CPU.
    """
    num_factors = len(check_data(data))
    sizes = metric_sizes("pca_factor_vae", preset, {"images_per_vote": images_per_vote, "num_train": num_train,
                                              "num_eval": num_eval})
    length = sizes["images_per_vote"]
    entropy = root_entropy(seed)
    train_y, train_u = _direction_votes(data, represent, sizes["num_train"], length,
                                        phase_stream(entropy, "directions"), encode_batch)
    eval_y, eval_u = _direction_votes(data, represent, sizes["num_eval"], length,
                                      phase_stream(entropy, "pca_factor_vae/eval"), encode_batch)
    result = pca_factor_vae_from_votes(train_u, train_y, eval_u, eval_y, num_factors)
    angles = direction_angles(result["directions"])
    return jsonable({"score": result["eval_accuracy"], **result,
                      "standard_error": accuracy_standard_error(result["eval_accuracy"], sizes["num_eval"]),
                      "angles_deg": angles, **_angle_summary(angles),
                      "votes_per_factor": np.bincount(train_y, minlength=num_factors),
                      "num_encoded": (sizes["num_train"] + sizes["num_eval"]) * length,
                      "params": result_params(preset, seed, sizes)})


def pca_mig_score(data, represent: Represent, seed, *, preset: str = "default", directions=None,
                  images_per_vote: int | None = None, num_votes: int | None = None, num_train: int | None = None,
                  num_bins: int | None = None, encode_batch: int = ENCODE_BATCH) -> dict:
    """PCA-MIG: MIG (10 bins by default, as the authors' code) of the codes of `num_train` random points
    projected on the factor directions D. D is discovered with `num_votes` votes of `images_per_vote`
    images unless given (e.g. `pca_factor_vae_score(...)["directions"]` from the same seed)."""
    check_data(data)
    sizes = metric_sizes("pca_mig", preset, {"images_per_vote": images_per_vote, "num_votes": num_votes,
                                       "num_train": num_train, "num_bins": num_bins})
    entropy = root_entropy(seed)
    encoded = 0
    if directions is None:
        found = discover_directions(data, represent, entropy, images_per_vote=sizes["images_per_vote"],
                                    num_votes=sizes["num_votes"], encode_batch=encode_batch)
        directions, encoded = found["directions"], found["num_encoded"]
    else:
        sizes = {k: v for k, v in sizes.items() if k not in ("images_per_vote", "num_votes")}
        sizes["directions"] = "given"
    directions = np.asarray(directions, dtype=np.float64)
    codes, factors = sample_points(data, represent, sizes["num_train"], phase_stream(entropy, "pca_mig/points"),
                                    encode_batch)
    if directions.ndim != 2 or directions.shape[1] != codes.shape[1]:
        raise AvaeError(f"pca_mig: directions {directions.shape} do not match codes of dimension {codes.shape[1]}")
    result = pca_mig_from_codes(codes, factors, directions, sizes["num_bins"])
    angles = direction_angles(directions)
    return jsonable({"score": result["mig"], **result, "directions": directions, "angles_deg": angles,
                      **_angle_summary(angles), "num_encoded": encoded + len(codes),
                      "params": result_params(preset, seed, sizes)})
