"""What each reported number is: a label for readers, its unit, and which way is better.

Keys are paths in evaluate.json (a benchmark record adds `training.*`); `*` stands for one key,
the image set (REC, INT or N). Pages and tables read labels and directions from here only, so a
metric added here shows up everywhere with its arrow.
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
