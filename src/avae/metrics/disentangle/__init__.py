"""Disentanglement metrics against ground-truth factors, as pure functions of an explicit seed.

One file per metric (beta_vae, factor_vae, mig, dci, sap, and pca for the PCA-direction variants),
sharing `common` (presets, random streams, encoding); this package exports all of them. Every metric
has two layers:

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
values and the companion paper's code; ``preset="fast"``: about 250,000 encodings, sizes chosen for
their standard error, not comparable with published numbers), and any size can be given explicitly to
override it. See :data:`PRESETS`. The vote-accuracy scores (BetaVAE, FactorVAE, PCA-FactorVAE) report
``standard_error``, the binomial standard error of their eval accuracy.

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

from functools import partial
from typing import Callable

import numpy as np

from ...errors import AvaeError
from .common import ENCODE_BATCH, PRESETS, Represent, metric_sizes, root_entropy
from .beta_vae import beta_vae_features, beta_vae_from_features, beta_vae_score
from .factor_vae import factor_vae_from_codes, factor_vae_from_variances, factor_vae_score, prune_dims
from .mig import histogram_discretize, mig_from_codes, mig_score
from .dci import dci_completeness, dci_disentanglement, dci_from_codes, dci_score
from .sap import sap_from_codes, sap_score
from .pca import (
    direction_angles, directions_from_votes, discover_directions, pca_factor_vae_from_votes,
    pca_factor_vae_score, pca_mig_from_codes, pca_mig_score, smallest_variance_directions,
)
from .synthetic import SyntheticFactors


__all__ = [
    "PRESETS", "METRICS", "ENCODE_BATCH", "Represent", "SyntheticFactors",
    # gathering wrappers
    "beta_vae_score", "factor_vae_score", "mig_score", "dci_score", "sap_score",
    "discover_directions", "pca_factor_vae_score", "pca_mig_score", "scores", "scores_with_directions",
    # scoring on arrays
    "histogram_discretize", "mig_from_codes", "beta_vae_features", "beta_vae_from_features",
    "prune_dims", "factor_vae_from_variances", "factor_vae_from_codes", "dci_from_codes",
    "dci_disentanglement", "dci_completeness", "sap_from_codes", "smallest_variance_directions",
    "directions_from_votes", "direction_angles", "pca_factor_vae_from_votes", "pca_mig_from_codes",
]

METRICS: dict[str, Callable[..., dict]] = {
    "beta_vae": beta_vae_score,
    "factor_vae": factor_vae_score,
    "mig": mig_score,
    "dci": dci_score,
    "sap": sap_score,
    "pca_factor_vae": pca_factor_vae_score,
    "pca_mig": pca_mig_score,
}


def scores(data, represent: Represent, seed: int, metrics=None, *, preset: str = "default",
           encode_batch: int = ENCODE_BATCH, progress: bool = False,
           run_metric: Callable[[str, Callable[[], dict]], dict] | None = None, **sizes: dict) -> dict:
    """Several metrics by name, each with the same seed (so each equals its own call).

    `sizes` maps a metric name to explicit sizes, e.g. ``dci={"num_train": 2000}``. When both PCA
    metrics run with matching sizes, PCA-MIG reuses PCA-FactorVAE's directions (identical by construction).
    `progress`: a progress bar over the metrics. `run_metric(name, compute)` returns each metric's
    result (by default `compute()`); `avae evaluate` passes one that keeps every finished metric, so an
    interrupted evaluation continues after the last one it finished.
    """
    from tqdm import tqdm

    names = list(METRICS) if metrics is None else list(metrics)
    unknown = [n for n in names + list(sizes) if n not in METRICS]
    if unknown:
        raise AvaeError(f"unknown metric(s) {', '.join(unknown)}; choose from: {', '.join(METRICS)}")
    if isinstance(seed, np.random.Generator):
        raise AvaeError("scores need an int seed (each metric restarts from it)")
    root_entropy(seed)  # validate
    results = {}
    bar = tqdm(names, desc="disentanglement", disable=not progress, leave=False)
    for name in bar:
        bar.set_postfix_str(name)
        compute = partial(_metric, name, data, represent, seed, preset, encode_batch, sizes, results)
        results[name] = compute() if run_metric is None else run_metric(name, compute)
    return results


def _metric(name: str, data, represent: Represent, seed: int, preset: str, encode_batch: int, sizes: dict,
            earlier: dict) -> dict:
    """One metric of `scores`; PCA-MIG takes PCA-FactorVAE's directions from `earlier` results where they match."""
    options = dict(sizes.get(name, {}))
    shared = None
    if name == "pca_mig" and "pca_factor_vae" in earlier and "directions" not in options:
        fvae = metric_sizes("pca_factor_vae", preset, sizes.get("pca_factor_vae", {}))
        mig = metric_sizes("pca_mig", preset, options)
        if fvae["images_per_vote"] == mig["images_per_vote"] and fvae["num_train"] == mig["num_votes"]:
            shared = {"directions": "pca_factor_vae", "images_per_vote": mig["images_per_vote"],
                      "num_votes": mig["num_votes"]}
            options = {k: v for k, v in options.items() if k not in ("images_per_vote", "num_votes")}
            options["directions"] = earlier["pca_factor_vae"]["directions"]
    result = METRICS[name](data, represent, seed, preset=preset, encode_batch=encode_batch, **options)
    if shared:  # the same numbers as a call of its own; only the direction encodings were saved
        result["params"] = {**result["params"], **shared}
    return result


def scores_with_directions(data, represent: Represent, seed: int, preset: str = "default", metrics=None, *,
                           encode_batch: int = ENCODE_BATCH, progress: bool = False,
                           run_metric: Callable[[str, Callable[[], dict]], dict] | None = None,
                           **sizes: dict) -> tuple[dict, np.ndarray | None]:
    """`scores` (all metrics by default), plus the PCA factor directions D (K, d) when a PCA metric ran."""
    results = scores(data, represent, seed, metrics, preset=preset, encode_batch=encode_batch, progress=progress,
                     run_metric=run_metric, **sizes)
    source = next((results[n] for n in ("pca_factor_vae", "pca_mig") if n in results), None)
    return results, (None if source is None else np.asarray(source["directions"], dtype=np.float64))
