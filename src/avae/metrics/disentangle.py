"""Disentanglement metrics against ground-truth factors, as pure functions of an explicit seed.

Every metric has two layers:

- a *scoring* function on arrays (``mig_from_codes``, ``dci_from_codes``, ...), which needs no
  images and so can be checked on synthetic codes;
- a *gathering* wrapper (``mig_score``, ``dci_score``, ...) taking
  1. ``data``: a ground-truth set with ``factor_sizes``, ``sample_factors(n, generator)`` and
     ``images_for_factors(classes)`` (uint8 NCHW), e.g. :class:`avae.data.factors.FactorImages`;
  2. ``represent``: a callable mapping a uint8 NCHW image batch to codes ``(n, d)`` (numpy or torch;
     the caller wraps the model's encoder, usually its posterior mean, as disentanglement_lib does);
  3. ``seed``: an ``int`` (reproducible) or a ``np.random.Generator`` (consumed). Global random
     state is never used.

  It returns a JSON-ready dict: the numbers, a headline ``score``, ``num_encoded`` (images passed
  to ``represent``) and ``params`` (everything that affects the numbers).

Sizes come from a preset (``preset="default"``: disentanglement_lib's ``unsupervised_study_v1``
values and the companion paper's code; ``preset="fast"``: disent's fast sizes, not comparable with
published numbers), and any size can be given explicitly to override it. See :data:`PRESETS`.

Random streams: each phase of a metric (variance estimate, train votes, eval votes, classifier seed)
draws from its own generator derived from ``(seed, phase name)``, so changing ``num_eval`` does not
change the training votes, results do not depend on ``encode_batch``, and ``pca_factor_vae_score``
and ``pca_mig_score`` with the same seed and sizes find the same directions.

The companion paper's latent-direction discovery (PCA-FactorVAE, PCA-MIG) is here too: for each
vote, fix one factor, sample the others for L images, encode, and keep the smallest-variance
principal direction; per factor, the top eigenvector of the mean outer product of its votes'
directions is the factor's direction. The method assumes as many code dimensions as factors (the
paper uses l = 6 on 3D Shapes and dSprites): with more, a fixed factor's direction competes with
every unused low-variance code direction.

Where this differs from disentanglement_lib (DL) and the authors' PCA code, on purpose:
- Seeds: numpy Generators, one stream per phase, instead of one shared RandomState: the same
  distributions, not DL's exact draws. Votes are encoded in chunks of `encode_batch` images rather
  than one vote batch at a time (no effect for an encoder in eval mode).
- FactorVAE: a vote is stored under the winning dimension's own index (DL: its position among the
  active dimensions; the accuracy is the same) and `num_active_dims` counts active dimensions (DL
  returns the total).
- sklearn: DCI's GradientBoostingClassifier and SAP's LinearSVC get a `random_state` from the seed
  (DL passes none); LinearSVC is pinned to the primal solver (`dual=False`: the same problem as DL's
  era default dual=True, what sklearn ≥ 1.5 picks here, and deterministic). LogisticRegression and
  GradientBoostingClassifier use the installed sklearn's defaults, as DL does, so BetaVAE and DCI
  depend on its version (recorded in `params`). Convergence warnings are counted (`not_converged`),
  not printed.
- Edge cases DL does not handle: with one code dimension MIG and SAP take the second best as 0; DCI
  with one factor (one code) scores each code (factor) 1; factors constant in the data are rejected.
- PCA: `numpy.linalg.eigh` of the covariance instead of sklearn's PCA (the same smallest direction
  when L > d, which is required) and of the mean outer product (the authors fit a centred PCA to its
  rows: nearly the same for a near-rank-1 matrix); signs made canonical; scores are fractions, not %.
  PCA-MIG's directions come from the same stream as PCA-FactorVAE's training votes, so one seed gives
  one D.
"""
from __future__ import annotations

import math
import warnings
import zlib
from typing import Callable

import numpy as np
import torch

from ..errors import AvaeError

__all__ = [
    "PRESETS", "METRICS", "SyntheticFactors",
    # gathering wrappers
    "beta_vae_score", "factor_vae_score", "mig_score", "dci_score", "sap_score",
    "discover_directions", "pca_factor_vae_score", "pca_mig_score", "evaluate", "evaluate_all",
    # scoring on arrays
    "histogram_discretize", "mig_from_codes", "beta_vae_features", "beta_vae_from_features",
    "prune_dims", "factor_vae_from_variances", "factor_vae_from_codes", "dci_from_codes",
    "dci_disentanglement", "dci_completeness", "sap_from_codes", "smallest_variance_directions",
    "directions_from_votes", "direction_angles", "pca_factor_vae_from_votes", "pca_mig_from_codes",
]

Represent = Callable[[torch.Tensor], "np.ndarray"]

# Sizes per metric. "default": disentanglement_lib (unsupervised_study_v1 gin configs) and, for the
# PCA metrics, the companion paper's code (L = 10,000 images per vote; 10,000 train / 5,000 eval votes;
# PCA-MIG with 10 bins over 10,000 points). "fast": disent's fast sizes (DCI 1000/500, FactorVAE
# 700/350/1000, MIG 2000, SAP 2000/1000), BetaVAE 1000/500, and CPU-practical PCA sizes.
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
        "beta_vae": {"batch_size": 64, "num_train": 1_000, "num_eval": 500},
        "factor_vae": {"batch_size": 64, "num_train": 700, "num_eval": 350,
                       "num_variance_estimate": 1_000, "prune_threshold": 0.05},
        "mig": {"num_train": 2_000, "num_bins": 20},
        "dci": {"num_train": 1_000, "num_test": 500},
        "sap": {"num_train": 2_000, "num_test": 1_000, "continuous_factors": False},
        "pca_factor_vae": {"images_per_vote": 256, "num_train": 200, "num_eval": 100},
        "pca_mig": {"images_per_vote": 256, "num_votes": 200, "num_train": 2_000, "num_bins": 10},
    },
}

ENCODE_BATCH = 1024  # images per call of `represent`; results do not depend on it


# ------------------------------------------------------------------------------------------------
# Seeds, sizes, encoding


def _root_entropy(seed) -> int:
    """A non-negative integer from an int seed, or drawn from (and so consuming) a Generator."""
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63 - 1))
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and int(seed) >= 0:
        return int(seed)
    raise AvaeError(f"seed must be a non-negative int or a numpy Generator, not {seed!r}")


def _stream(entropy: int, phase: str) -> np.random.Generator:
    """The generator of one named phase: independent of every other phase and of chunking."""
    key = zlib.crc32(phase.encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(key,)))


def _classifier_seed(entropy: int, phase: str) -> int:
    return int(_stream(entropy, phase).integers(0, 2**31 - 1))


def _sizes(metric: str, preset: str, overrides: dict) -> dict:
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


def _check_data(data) -> tuple[int, ...]:
    sizes = tuple(int(s) for s in data.factor_sizes)
    if not sizes:
        raise AvaeError("the ground-truth data has no factors")
    constant = [i for i, s in enumerate(sizes) if s < 2]
    if constant:
        names = getattr(data, "factor_names", None)
        which = ", ".join(str(names[i]) if names else str(i) for i in constant)
        raise AvaeError(f"factor(s) {which} take a single value; use a factor set without constant factors")
    return sizes


def _as_codes(z, n: int) -> np.ndarray:
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


def _encode(data, represent: Represent, classes: np.ndarray, encode_batch: int) -> np.ndarray:
    """Codes (n, d) float64 of the images with the given factor classes, `encode_batch` at a time."""
    parts = []
    for start in range(0, len(classes), encode_batch):
        chunk = classes[start:start + encode_batch]
        parts.append(_as_codes(represent(data.images_for_factors(chunk)), len(chunk)))
    return np.concatenate(parts, axis=0)


def _sample_points(data, represent, n: int, rng, encode_batch: int) -> tuple[np.ndarray, np.ndarray]:
    factors = np.asarray(data.sample_factors(n, rng), dtype=np.int64)
    return _encode(data, represent, factors, encode_batch), factors


def _votes(data, represent, num_votes: int, rows_per_vote: int, draw, reduce, rng, encode_batch: int):
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
        codes = _encode(data, represent, classes, encode_batch)
        stats.append(reduce(codes.reshape(count, rows_per_vote, -1)))
    return np.asarray(labels, dtype=np.int64), np.concatenate(stats, axis=0)


def _fixed_factor_draw(data, num_factors: int, rows: int):
    """One vote: factor k uniform; `rows` factor vectors that share the first one's value of k."""

    def draw(rng):
        k = int(rng.integers(num_factors))
        classes = np.array(data.sample_factors(rows, rng), dtype=np.int64)
        classes[:, k] = classes[0, k]
        return k, classes

    return draw


def _fits_quietly(fits: Callable[[], object]):
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


def _params(preset: str, seed, sizes: dict, **extra) -> dict:
    import sklearn

    return {"preset": preset, "seed": seed if isinstance(seed, (int, np.integer)) else "generator",
            **sizes, **extra, "sklearn": sklearn.__version__}


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    return x


# ------------------------------------------------------------------------------------------------
# MIG (disentanglement_lib `mig` with the 20-bin histogram discretiser)


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
    _check_data(data)
    sizes = _sizes("mig", preset, {"num_train": num_train, "num_bins": num_bins})
    entropy = _root_entropy(seed)
    codes, factors = _sample_points(data, represent, sizes["num_train"], _stream(entropy, "mig/points"), encode_batch)
    result = mig_from_codes(codes, factors, sizes["num_bins"])
    return _jsonable({"score": result["mig"], **result, "num_encoded": len(codes), "params": _params(preset, seed, sizes)})


# ------------------------------------------------------------------------------------------------
# BetaVAE score (disentanglement_lib `beta_vae_sklearn`)


def beta_vae_features(codes_a: np.ndarray, codes_b: np.ndarray) -> np.ndarray:
    """Per vote, the batch mean of |z_a − z_b|: codes (votes, batch, d) → features (votes, d)."""
    return np.mean(np.abs(np.asarray(codes_a) - np.asarray(codes_b)), axis=1)


def beta_vae_from_features(train_features, train_labels, eval_features, eval_labels, random_state: int = 0) -> dict:
    """Accuracy of sklearn's LogisticRegression (library defaults) predicting the shared factor."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(random_state=random_state)
    _, not_converged = _fits_quietly(lambda: model.fit(train_features, train_labels))
    return {"train_accuracy": float(model.score(train_features, train_labels)),
            "eval_accuracy": float(model.score(eval_features, eval_labels)),
            "not_converged": not_converged}


def beta_vae_score(data, represent: Represent, seed, *, preset: str = "default", batch_size: int | None = None,
                   num_train: int | None = None, num_eval: int | None = None,
                   encode_batch: int = ENCODE_BATCH) -> dict:
    """BetaVAE score: each vote draws factor k and two batches of `batch_size` factor vectors that agree on k.

    Cost: (num_train + num_eval) × 2 × batch_size encodings (1.92 million by default).
    """
    sizes_k = _check_data(data)
    sizes = _sizes("beta_vae", preset, {"batch_size": batch_size, "num_train": num_train, "num_eval": num_eval})
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

    entropy = _root_entropy(seed)
    train_y, train_x = _votes(data, represent, sizes["num_train"], 2 * b, draw, reduce,
                              _stream(entropy, "beta_vae/train"), encode_batch)
    eval_y, eval_x = _votes(data, represent, sizes["num_eval"], 2 * b, draw, reduce,
                            _stream(entropy, "beta_vae/eval"), encode_batch)
    rs = _classifier_seed(entropy, "beta_vae/classifier")
    result = beta_vae_from_features(train_x, train_y, eval_x, eval_y, random_state=rs)
    encoded = (sizes["num_train"] + sizes["num_eval"]) * 2 * b
    return _jsonable({"score": result["eval_accuracy"], **result, "num_encoded": encoded,
                      "params": _params(preset, seed, sizes, classifier_random_state=rs)})


# ------------------------------------------------------------------------------------------------
# FactorVAE score (disentanglement_lib `factor_vae_score`, prune_dims.threshold = 0.05)


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
    num_factors = len(_check_data(data))
    sizes = _sizes("factor_vae", preset, {"batch_size": batch_size, "num_train": num_train, "num_eval": num_eval,
                                          "num_variance_estimate": num_variance_estimate,
                                          "prune_threshold": prune_threshold})
    b = sizes["batch_size"]
    if b < 2:
        raise AvaeError("factor_vae: batch_size must be at least 2 (a variance per vote)")
    entropy = _root_entropy(seed)
    points, _ = _sample_points(data, represent, sizes["num_variance_estimate"],
                               _stream(entropy, "factor_vae/variance"), encode_batch)
    draw = _fixed_factor_draw(data, num_factors, b)

    def reduce(codes):
        return np.var(codes, axis=1, ddof=1)

    train_y, train_var = _votes(data, represent, sizes["num_train"], b, draw, reduce,
                                _stream(entropy, "factor_vae/train"), encode_batch)
    eval_y, eval_var = _votes(data, represent, sizes["num_eval"], b, draw, reduce,
                              _stream(entropy, "factor_vae/eval"), encode_batch)
    result = factor_vae_from_variances(np.var(points, axis=0, ddof=1), train_var, train_y, eval_var, eval_y,
                                       num_factors, sizes["prune_threshold"])
    encoded = sizes["num_variance_estimate"] + (sizes["num_train"] + sizes["num_eval"]) * b
    return _jsonable({"score": result["eval_accuracy"], **result, "num_encoded": encoded,
                      "params": _params(preset, seed, sizes)})


# ------------------------------------------------------------------------------------------------
# DCI (disentanglement_lib `dci`: gradient-boosted trees, sklearn defaults)


def _entropy_base(p: np.ndarray, base: int, axis: int) -> np.ndarray:
    """Shannon entropy in base `base` of non-negative weights along `axis` (normalised first)."""
    p = p / p.sum(axis=axis, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=axis) / math.log(base)


def dci_disentanglement(importance: np.ndarray) -> float:
    """Σ_i ρ_i (1 − H_K(P_i·)), P_i· = row i of the (codes × factors) importance matrix, normalised."""
    importance = np.asarray(importance, dtype=np.float64)
    num_factors = importance.shape[1]
    per_code = 1.0 - _entropy_base(importance + 1e-11, num_factors, axis=1) if num_factors > 1 \
        else np.ones(importance.shape[0])
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    return float(np.sum(per_code * weights.sum(axis=1) / weights.sum()))


def dci_completeness(importance: np.ndarray) -> float:
    """Σ_j ρ̃_j (1 − H_D(R_·j normalised)), with D = number of codes."""
    importance = np.asarray(importance, dtype=np.float64)
    num_codes = importance.shape[0]
    per_factor = 1.0 - _entropy_base(importance + 1e-11, num_codes, axis=0) if num_codes > 1 \
        else np.ones(importance.shape[1])
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    return float(np.sum(per_factor * weights.sum(axis=0) / weights.sum()))


def dci_from_codes(train_codes, train_factors, test_codes, test_factors, random_state: int = 0) -> dict:
    """DCI from codes (n, d) and factor classes (n, K): one GradientBoostingClassifier per factor.

    Importance R[i, j] = |feature_importances_| of code i for factor j; informativeness = mean
    train / test accuracy over factors.
    """
    from sklearn.ensemble import GradientBoostingClassifier

    train_codes, test_codes = np.asarray(train_codes, np.float64), np.asarray(test_codes, np.float64)
    train_factors, test_factors = np.asarray(train_factors), np.asarray(test_factors)
    num_factors = train_factors.shape[1]
    importance = np.zeros((train_codes.shape[1], num_factors))
    train_acc, test_acc = [], []
    for j in range(num_factors):
        model = GradientBoostingClassifier(random_state=random_state)
        model.fit(train_codes, train_factors[:, j])
        importance[:, j] = np.abs(model.feature_importances_)
        train_acc.append(float(np.mean(model.predict(train_codes) == train_factors[:, j])))
        test_acc.append(float(np.mean(model.predict(test_codes) == test_factors[:, j])))
    return {"disentanglement": dci_disentanglement(importance), "completeness": dci_completeness(importance),
            "informativeness_train": float(np.mean(train_acc)), "informativeness_test": float(np.mean(test_acc)),
            "importance_matrix": importance}


def dci_score(data, represent: Represent, seed, *, preset: str = "default", num_train: int | None = None,
              num_test: int | None = None, encode_batch: int = ENCODE_BATCH) -> dict:
    """DCI on `num_train` / `num_test` random points (default 10,000 / 5,000). Slow: one GBT per factor."""
    _check_data(data)
    sizes = _sizes("dci", preset, {"num_train": num_train, "num_test": num_test})
    entropy = _root_entropy(seed)
    train_z, train_v = _sample_points(data, represent, sizes["num_train"], _stream(entropy, "dci/train"), encode_batch)
    test_z, test_v = _sample_points(data, represent, sizes["num_test"], _stream(entropy, "dci/test"), encode_batch)
    rs = _classifier_seed(entropy, "dci/classifier")
    result = dci_from_codes(train_z, train_v, test_z, test_v, random_state=rs)
    return _jsonable({"score": result["disentanglement"], **result,
                      "num_encoded": sizes["num_train"] + sizes["num_test"],
                      "params": _params(preset, seed, sizes, classifier_random_state=rs)})


# ------------------------------------------------------------------------------------------------
# SAP (disentanglement_lib `sap_score`)


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

    _, not_converged = _fits_quietly(fit_all)
    ordered = np.sort(scores, axis=0)[::-1]
    second = ordered[1] if num_codes > 1 else np.zeros(num_factors)
    return {"sap": float(np.mean(ordered[0] - second)), "score_matrix": scores, "not_converged": not_converged}


def sap_score(data, represent: Represent, seed, *, preset: str = "default", num_train: int | None = None,
              num_test: int | None = None, continuous_factors: bool | None = None,
              encode_batch: int = ENCODE_BATCH) -> dict:
    """SAP on `num_train` / `num_test` random points (default 10,000 / 5,000), discrete factors."""
    _check_data(data)
    sizes = _sizes("sap", preset, {"num_train": num_train, "num_test": num_test,
                                   "continuous_factors": continuous_factors})
    entropy = _root_entropy(seed)
    train_z, train_v = _sample_points(data, represent, sizes["num_train"], _stream(entropy, "sap/train"), encode_batch)
    test_z, test_v = _sample_points(data, represent, sizes["num_test"], _stream(entropy, "sap/test"), encode_batch)
    rs = _classifier_seed(entropy, "sap/classifier")
    result = sap_from_codes(train_z, train_v, test_z, test_v, sizes["continuous_factors"], random_state=rs)
    return _jsonable({"score": result["sap"], **result, "num_encoded": sizes["num_train"] + sizes["num_test"],
                      "params": _params(preset, seed, sizes, classifier_random_state=rs)})


# ------------------------------------------------------------------------------------------------
# The companion paper's latent directions, PCA-FactorVAE and PCA-MIG


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
    draw = _fixed_factor_draw(data, num_factors, images_per_vote)
    return _votes(data, represent, num_votes, images_per_vote, draw, smallest_variance_directions, rng, encode_batch)


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
    num_factors = len(_check_data(data))
    sizes = _sizes("pca_mig", preset, {"images_per_vote": images_per_vote, "num_votes": num_votes})
    sizes = {k: sizes[k] for k in ("images_per_vote", "num_votes")}
    labels, votes = _direction_votes(data, represent, sizes["num_votes"], sizes["images_per_vote"],
                                     _stream(_root_entropy(seed), "directions"), encode_batch)
    directions = directions_from_votes(votes, labels, num_factors)
    return {"directions": directions, "angles_deg": direction_angles(directions),
            "votes_per_factor": np.bincount(labels, minlength=num_factors), "vote_directions": votes,
            "vote_labels": labels, "num_encoded": sizes["num_votes"] * sizes["images_per_vote"],
            "params": _params(preset, seed, sizes)}


def pca_factor_vae_score(data, represent: Represent, seed, *, preset: str = "default",
                         images_per_vote: int | None = None, num_train: int | None = None,
                         num_eval: int | None = None, encode_batch: int = ENCODE_BATCH) -> dict:
    """PCA-FactorVAE score (a fraction in [0, 1]; the paper prints %). Train votes build D.

    Default sizes follow the authors' code: L = 10,000 images per vote, 10,000 train and 5,000 eval
    votes, i.e. 150 million encodings; use `preset="fast"` (L = 256, 200 / 100 votes) on a CPU.
    """
    num_factors = len(_check_data(data))
    sizes = _sizes("pca_factor_vae", preset, {"images_per_vote": images_per_vote, "num_train": num_train,
                                              "num_eval": num_eval})
    length = sizes["images_per_vote"]
    entropy = _root_entropy(seed)
    train_y, train_u = _direction_votes(data, represent, sizes["num_train"], length,
                                        _stream(entropy, "directions"), encode_batch)
    eval_y, eval_u = _direction_votes(data, represent, sizes["num_eval"], length,
                                      _stream(entropy, "pca_factor_vae/eval"), encode_batch)
    result = pca_factor_vae_from_votes(train_u, train_y, eval_u, eval_y, num_factors)
    angles = direction_angles(result["directions"])
    return _jsonable({"score": result["eval_accuracy"], **result, "angles_deg": angles, **_angle_summary(angles),
                      "votes_per_factor": np.bincount(train_y, minlength=num_factors),
                      "num_encoded": (sizes["num_train"] + sizes["num_eval"]) * length,
                      "params": _params(preset, seed, sizes)})


def pca_mig_score(data, represent: Represent, seed, *, preset: str = "default", directions=None,
                  images_per_vote: int | None = None, num_votes: int | None = None, num_train: int | None = None,
                  num_bins: int | None = None, encode_batch: int = ENCODE_BATCH) -> dict:
    """PCA-MIG: MIG (10 bins by default, as the authors' code) of the codes of `num_train` random points
    projected on the factor directions D. D is discovered with `num_votes` votes of `images_per_vote`
    images unless given (e.g. `pca_factor_vae_score(...)["directions"]` from the same seed)."""
    _check_data(data)
    sizes = _sizes("pca_mig", preset, {"images_per_vote": images_per_vote, "num_votes": num_votes,
                                       "num_train": num_train, "num_bins": num_bins})
    entropy = _root_entropy(seed)
    encoded = 0
    if directions is None:
        found = discover_directions(data, represent, entropy, images_per_vote=sizes["images_per_vote"],
                                    num_votes=sizes["num_votes"], encode_batch=encode_batch)
        directions, encoded = found["directions"], found["num_encoded"]
    else:
        sizes = {k: v for k, v in sizes.items() if k not in ("images_per_vote", "num_votes")}
        sizes["directions"] = "given"
    directions = np.asarray(directions, dtype=np.float64)
    codes, factors = _sample_points(data, represent, sizes["num_train"], _stream(entropy, "pca_mig/points"),
                                    encode_batch)
    if directions.ndim != 2 or directions.shape[1] != codes.shape[1]:
        raise AvaeError(f"pca_mig: directions {directions.shape} do not match codes of dimension {codes.shape[1]}")
    result = pca_mig_from_codes(codes, factors, directions, sizes["num_bins"])
    angles = direction_angles(directions)
    return _jsonable({"score": result["mig"], **result, "directions": directions, "angles_deg": angles,
                      **_angle_summary(angles), "num_encoded": encoded + len(codes),
                      "params": _params(preset, seed, sizes)})


# ------------------------------------------------------------------------------------------------
# All of them


METRICS: dict[str, Callable[..., dict]] = {
    "beta_vae": beta_vae_score,
    "factor_vae": factor_vae_score,
    "mig": mig_score,
    "dci": dci_score,
    "sap": sap_score,
    "pca_factor_vae": pca_factor_vae_score,
    "pca_mig": pca_mig_score,
}


def evaluate(data, represent: Represent, seed: int, metrics=None, *, preset: str = "default",
             encode_batch: int = ENCODE_BATCH, **sizes: dict) -> dict:
    """Several metrics by name, each with the same seed (so each equals its own call).

    `sizes` maps a metric name to explicit sizes, e.g. ``dci={"num_train": 2000}``. When both PCA
    metrics run with matching sizes, PCA-MIG reuses PCA-FactorVAE's directions (identical by construction).
    """
    names = list(METRICS) if metrics is None else list(metrics)
    unknown = [n for n in names + list(sizes) if n not in METRICS]
    if unknown:
        raise AvaeError(f"unknown metric(s) {', '.join(unknown)}; choose from: {', '.join(METRICS)}")
    if isinstance(seed, np.random.Generator):
        raise AvaeError("evaluate needs an int seed (each metric restarts from it)")
    _root_entropy(seed)  # validate
    results = {}
    for name in names:
        options = dict(sizes.get(name, {}))
        shared = None
        if name == "pca_mig" and "pca_factor_vae" in results and "directions" not in options:
            fvae = _sizes("pca_factor_vae", preset, sizes.get("pca_factor_vae", {}))
            mig = _sizes("pca_mig", preset, options)
            if fvae["images_per_vote"] == mig["images_per_vote"] and fvae["num_train"] == mig["num_votes"]:
                shared = {"directions": "pca_factor_vae", "images_per_vote": mig["images_per_vote"],
                          "num_votes": mig["num_votes"]}
                options = {k: v for k, v in options.items() if k not in ("images_per_vote", "num_votes")}
                options["directions"] = results["pca_factor_vae"]["directions"]
        results[name] = METRICS[name](data, represent, seed, preset=preset, encode_batch=encode_batch, **options)
        if shared:  # the same numbers as a call of its own; only the direction encodings were saved
            results[name]["params"] = {**results[name]["params"], **shared}
    return results


def evaluate_all(data, represent: Represent, seed: int, preset: str = "default", metrics=None, *,
                 encode_batch: int = ENCODE_BATCH, **sizes: dict) -> tuple[dict, np.ndarray | None]:
    """`evaluate` (all metrics by default), plus the PCA factor directions D (K, d) when a PCA metric ran."""
    results = evaluate(data, represent, seed, metrics, preset=preset, encode_batch=encode_batch, **sizes)
    source = next((results[n] for n in ("pca_factor_vae", "pca_mig") if n in results), None)
    return results, (None if source is None else np.asarray(source["directions"], dtype=np.float64))


# ------------------------------------------------------------------------------------------------
# A synthetic ground truth, for checks with exactly known answers


class SyntheticFactors:
    """A factor grid whose 'images' are uint8 (n, 1, 1, K) tensors holding the factor classes.

    `read_factors(images)` recovers the classes, so a `represent` can be any function of the true
    factors (identity, a rotation, noise, an entangled mix) and the metrics' answers are known.
    """

    def __init__(self, factor_sizes=(3, 4, 5, 6), factor_names=None):
        self.factor_sizes = tuple(int(s) for s in factor_sizes)
        if max(self.factor_sizes) > 256:
            raise AvaeError("SyntheticFactors stores classes in uint8 pixels: factor sizes must be ≤ 256")
        self.factor_names = tuple(factor_names or (f"f{k}" for k in range(len(self.factor_sizes))))
        self.shape = (1, 1, len(self.factor_sizes))

    def __len__(self) -> int:
        return int(np.prod(self.factor_sizes))

    def sample_factors(self, n: int, generator: np.random.Generator) -> np.ndarray:
        return np.stack([generator.integers(0, s, size=n) for s in self.factor_sizes], axis=1).astype(np.int64)

    def index_of(self, classes) -> np.ndarray:
        classes = np.atleast_2d(np.asarray(classes, dtype=np.int64))
        return np.ravel_multi_index(tuple(classes.T), self.factor_sizes).astype(np.int64)

    def images_for_factors(self, classes) -> torch.Tensor:
        classes = np.atleast_2d(np.asarray(classes, dtype=np.int64))
        return torch.from_numpy(classes.astype(np.uint8)[:, None, None, :].copy())

    @staticmethod
    def read_factors(images) -> np.ndarray:
        """Factor classes (n, K) int64 of images made by `images_for_factors`."""
        return np.asarray(images).reshape(len(images), -1).astype(np.int64)

    def scaled(self, images) -> np.ndarray:
        """Factor classes mapped to [0, 1] per factor, (n, K) float64."""
        return self.read_factors(images) / (np.asarray(self.factor_sizes, dtype=np.float64) - 1.0)
