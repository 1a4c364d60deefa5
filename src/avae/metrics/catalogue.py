"""What each reported number is: a label for readers, its unit, and which way is better.

Keys are paths in evaluate.json (a benchmark record adds `training.*`); `*` stands for one key,
the image set (REC, INT or N). Pages and tables read labels and directions from here only, so a
metric added here shows up everywhere with its arrow. The headline metrics a benchmark reports
(HEADLINES, SAMPLER_HEADLINES), the ones the paper claims the AVAE best on, and how a run's values
of them are read, are declared here too.
"""
from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase


@dataclass(frozen=True)
class Metric:
    label: str
    better: str | None = None  # "higher", "lower", or None where neither way is better
    unit: str = ""

    @property
    def arrow(self) -> str:
        return {"higher": "↑", "lower": "↓"}.get(self.better, "")


# the image sets of sample quality, in the order pages show them
IMAGE_SETS = {
    "REC": "reconstructions of held-out images",
    "INT": "decoded spherical midpoints of pairs of held-out codes",
    "N": "samples from the model's sampler",
}

METRICS = {
    "sample_quality.*.frechet_distance": Metric("Fréchet distance", "lower"),
    "sample_quality.*.prd.precision": Metric("PRD precision (F₁/₈)", "higher"),  # max F_{1/β}, β = 8
    "sample_quality.*.prd.recall": Metric("PRD recall (F₈)", "higher"),  # max F_β
    "sample_quality.*.knn_precision_recall.precision": Metric("k-NN precision", "higher"),
    "sample_quality.*.knn_precision_recall.recall": Metric("k-NN recall", "higher"),
    "sample_quality.*.density_coverage.precision": Metric("k-NN precision (k = 5)", "higher"),
    "sample_quality.*.density_coverage.recall": Metric("k-NN recall (k = 5)", "higher"),
    "sample_quality.*.density_coverage.density": Metric("density", "higher"),
    "sample_quality.*.density_coverage.coverage": Metric("coverage", "higher"),
    "latent_quality.entropy.entropy": Metric("entropy of the whitened codes", "higher", "nats"),
    "latent_quality.entropy.reference": Metric("entropy of whitened N(0, I) codes (l/2)", None, "nats"),
    "latent_quality.entropy.gaussian_reference": Metric("the same estimator on true N(0, I) samples", None, "nats"),
    "latent_quality.gaussian_kl_to_prior": Metric("KL(Gaussian fit ‖ N(0, I))", "lower", "nats"),
    "latent_quality.gaussian_kl_to_sampling_distribution": Metric("KL(Gaussian fit ‖ sampling distribution)",
                                                                  "lower", "nats"),
    "latent_quality.sampling_variance": Metric("variance of the sampling distribution per axis"),
    "latent_quality.norm_chi2_test.ks_statistic": Metric("KS distance of ‖z‖² to its law under the sampler",
                                                        "lower"),
    "latent_quality.norm_chi2_test.p_value": Metric("p-value of that KS test"),
    "latent_quality.norm_chi2_test_prior.ks_statistic": Metric("KS distance of ‖z‖² to χ²_l under N(0, I)", "lower"),
    "latent_quality.norm_chi2_test_prior.p_value": Metric("p-value of that KS test"),
    "latent_quality.collapsed_axes.count": Metric("collapsed axes", "lower", "axes"),
    "latent_quality.reconstruction.mse_per_pixel": Metric("reconstruction MSE per pixel", "lower"),
    "latent_quality.reconstruction.sse_per_image": Metric("reconstruction SSE per image", "lower"),
    "likelihood.nll_nats": Metric("negative log-likelihood (IWAE bound)", "lower", "nats"),
    "likelihood.bits_per_dim": Metric("negative log-likelihood per dimension (IWAE bound)", "lower", "bits/dim"),
    "likelihood.nll_nats_sem": Metric("standard error of the NLL over images", None, "nats"),
    "likelihood.neg_elbo_nats": Metric("negative ELBO (K = 1 bound)", "lower", "nats"),
    "samplers.*.latent_fit.log_likelihood_per_dim": Metric("log-likelihood of the held-out codes per dimension",
                                                           "higher", "nats"),
    "samplers.*.latent_fit.sliced_ks": Metric("sliced KS distance of samples to the held-out codes", "lower"),
    "disentanglement.beta_vae.score": Metric("BetaVAE score", "higher"),
    "disentanglement.factor_vae.score": Metric("FactorVAE score", "higher"),
    "disentanglement.pca_factor_vae.score": Metric("FactorVAE score, PCA directions", "higher"),
    "disentanglement.mig.score": Metric("MIG", "higher"),
    "disentanglement.pca_mig.score": Metric("MIG, PCA directions", "higher"),
    "disentanglement.dci.score": Metric("DCI disentanglement", "higher"),
    "disentanglement.dci.disentanglement": Metric("DCI disentanglement", "higher"),
    "disentanglement.dci.completeness": Metric("DCI completeness", "higher"),
    "disentanglement.dci.informativeness_test": Metric("DCI informativeness (test accuracy)", "higher"),
    "disentanglement.sap.score": Metric("SAP", "higher"),
    "disentanglement.*.train_accuracy": Metric("train accuracy", "higher"),
    "disentanglement.*.eval_accuracy": Metric("evaluation accuracy", "higher"),
    "disentanglement.*.min_angle_deg": Metric("smallest angle between directions", "higher", "°"),
    "disentanglement.*.mean_angle_deg": Metric("mean angle between directions", "higher", "°"),
    "training.epoch_s": Metric("training time per epoch", "lower", "s"),
    "training.images_per_s": Metric("training throughput", "higher", "images/s"),
}

# what the rows and columns of a reported vector or matrix are (by its key in evaluate.json)
AXES = {
    "mutual_info": ("latent", "factor"),
    "importance_matrix": ("latent", "factor"),
    "score_matrix": ("latent", "factor"),
    "train_votes": ("factor", "latent"),
    "directions": ("factor", "latent"),
    "angles_deg": ("factor", "factor"),
    "mig_per_factor": ("factor",),
    "factor_entropy": ("factor",),
    "votes_per_factor": ("factor",),
    "global_variances": ("latent",),
    "active_dims": ("latent",),
    "classifier": ("latent",),
    "variances": ("latent",),
}


def describe(path: str) -> Metric | None:
    """The catalogue entry of an evaluate.json path; a path through an image set names the set."""
    for pattern, metric in METRICS.items():
        if fnmatchcase(path, pattern):
            image_set = path.split(".")[1]
            if path.startswith("sample_quality.") and image_set != "*":
                return Metric(f"{metric.label}, {image_set}", metric.better, metric.unit)
            return metric
    return None


# --- the benchmark's headline metrics -----------------------------------------------------------
# headline metrics: short name → path in evaluate.json (or metrics.jsonl for training numbers)
HEADLINES = {
    "fd_N": "sample_quality.N.frechet_distance",
    "fd_REC": "sample_quality.REC.frechet_distance",
    "fd_INT": "sample_quality.INT.frechet_distance",
    "prd_precision_N": "sample_quality.N.prd.precision",
    "prd_recall_N": "sample_quality.N.prd.recall",
    "density_N": "sample_quality.N.density_coverage.density",
    "coverage_N": "sample_quality.N.density_coverage.coverage",
    "entropy": "latent_quality.entropy.entropy",
    "entropy_reference": "latent_quality.entropy.reference",  # l/2, the entropy of whitened N(0, I) codes
    "entropy_gaussian": "latent_quality.entropy.gaussian_reference",  # the estimator on true N(0, I) samples
    # latent fit against the distribution the model samples from (the target), and against N(0, I)
    "gaussian_kl": "latent_quality.gaussian_kl_to_sampling_distribution",
    "gaussian_kl_prior": "latent_quality.gaussian_kl_to_prior",
    "norm_ks": "latent_quality.norm_chi2_test.ks_statistic",
    "norm_ks_prior": "latent_quality.norm_chi2_test_prior.ks_statistic",
    "collapsed_axes": "latent_quality.collapsed_axes.count",
    "nll": "likelihood.nll_nats",  # where defined: the VAE family and vamp (evaluate.json says why elsewhere)
    "mse_per_pixel": "latent_quality.reconstruction.mse_per_pixel",
    "sse_per_image": "latent_quality.reconstruction.sse_per_image",
    "factor_vae": "disentanglement.factor_vae.score",
    "pca_factor_vae": "disentanglement.pca_factor_vae.score",
    "mig": "disentanglement.mig.score",
    "pca_mig": "disentanglement.pca_mig.score",
    "beta_vae": "disentanglement.beta_vae.score",
    "dci_disentanglement": "disentanglement.dci.disentanglement",
    "sap": "disentanglement.sap.score",
    "epoch_s": "training.epoch_s",
    "images_per_s": "training.images_per_s",
}
TARGETS_NOTE = (
    "Latent fit: `gaussian_kl` is the KL of a Gaussian fitted to held-out codes to the distribution the model "
    "samples from (AVAE N(0, (1−h²)I); RAE and AE the Gaussian fitted to their training codes; the others "
    "N(0, I)), `norm_ks` the Kolmogorov–Smirnov statistic of the codes' squared Mahalanobis norm under that "
    "distribution against χ²_l; `gaussian_kl_prior` and `norm_ks_prior` are the same against N(0, I). "
    "`entropy_reference` is l/2; `entropy_gaussian` is what the same whitened-entropy estimator gives on true "
    "N(0, I) samples of the same l and n.")


def headline_metrics() -> dict[str, Metric]:
    """Each headline's label and direction, from the metric catalogue (its key where the catalogue has none)."""
    return {name: describe(path) or Metric(name) for name, path in HEADLINES.items()}


LOWER_IS_BETTER = {name for name, metric in headline_metrics().items() if metric.better == "lower"}

# each sampler's headline metrics: short name → path in evaluate.json's samplers.NAME
SAMPLER_HEADLINES = {
    "fd_N": "sample_quality.frechet_distance",
    "prd_precision_N": "sample_quality.prd.precision",
    "prd_recall_N": "sample_quality.prd.recall",
    "sliced_ks": "latent_fit.sliced_ks",
    "codes_log_likelihood": "latent_fit.log_likelihood_per_dim",
}
SAMPLERS_NOTE = (
    "Each sampler's codes decoded and scored like the model's own samples (the N set; `prior` is the model's own "
    "sampler); `sliced_ks` (sliced Kolmogorov–Smirnov distance of its codes to held-out codes) and "
    "`codes_log_likelihood` (mean log density of held-out codes per dimension, nats; – where it has no density) "
    "measure its fit to the codes.")


def sampler_metrics() -> dict[str, Metric]:
    """Each sampler headline's label and direction, from the metric catalogue."""
    out = {}
    for name, path in SAMPLER_HEADLINES.items():
        image_set = path.startswith("sample_quality.")
        where = f"sample_quality.N.{path.split('.', 1)[1]}" if image_set else f"samplers.*.{path}"
        out[name] = describe(where) or Metric(name)
    return out


# metrics on which the paper reports the AVAE best (paper-notes §8–9); each is checked on our numbers
# (gaussian_kl and norm_ks each against the model's own sampling distribution)
CLAIMED_BEST = ("fd_N", "prd_precision_N", "prd_recall_N", "entropy", "gaussian_kl", "norm_ks", "collapsed_axes",
                "pca_factor_vae", "pca_mig")


def lookup(tree: dict, path: str):
    """The number at a dotted path of a results tree; None where it has none there."""
    for key in path.split("."):
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree if isinstance(tree, (int, float)) else None


def headlines(evaluation: dict, training: dict) -> dict:
    """The HEADLINES values present in one run's evaluation and training summary."""
    found = {k: lookup({**evaluation, "training": training}, path) for k, path in HEADLINES.items()}
    return {k: v for k, v in found.items() if v is not None}


def sampler_headlines(scores: dict) -> dict:
    """The SAMPLER_HEADLINES values present in one sampler's entry of evaluate.json."""
    found = {k: lookup(scores, path) for k, path in SAMPLER_HEADLINES.items()}
    return {k: v for k, v in found.items() if v is not None}
