"""Known answers for the sample-quality and latent metrics."""
import math

import numpy as np
import pytest
import torch

from avae.kde_bandwidth import bandwidth
from avae.errors import AvaeError
from avae.metrics import generative as gen
from avae.metrics import latent


def test_frechet_distance_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(500, 8))
    assert gen.frechet_distance(x, x) == pytest.approx(0, abs=1e-8)


def test_frechet_distance_closed_form_for_isotropic_gaussians():
    d, m, s = 6, np.full(6, 0.5), 2.0
    fd = gen.frechet_distance_from_stats(np.zeros(d), np.eye(d), m, s * s * np.eye(d))
    assert fd == pytest.approx(m @ m + d * (1 - s) ** 2)
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(20000, d)), m + s * rng.normal(size=(20000, d))
    assert gen.frechet_distance(a, b) == pytest.approx(m @ m + d * (1 - s) ** 2, rel=0.05)


def test_frechet_distance_general_covariances_match_scipy_sqrtm():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    c1, c2, mu = a @ a.T, b @ b.T, rng.normal(size=5)
    expected = mu @ mu + np.trace(c1 + c2 - 2 * sqrtm(c1 @ c2).real)
    assert gen.frechet_distance_from_stats(mu, c1, np.zeros(5), c2) == pytest.approx(expected, rel=1e-8)


def test_prd_identical_sets_score_one_and_disjoint_sets_zero():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 4))
    same = gen.prd(x, x, seed=0, num_runs=2)
    assert same["precision"] == pytest.approx(1, abs=1e-3) and same["recall"] == pytest.approx(1, abs=1e-3)
    far = gen.prd(x, x + 1000, seed=0, num_runs=2)
    assert far["precision"] < 0.01 and far["recall"] < 0.01
    with pytest.raises(Exception, match="equal set sizes"):
        gen.prd(x, x[:10], seed=0)


def test_prd_is_deterministic_for_a_seed():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(300, 3)), rng.normal(0.5, 1, size=(300, 3))
    first = gen.prd(a, b, seed=5, num_runs=3)
    assert gen.prd(a, b, seed=5, num_runs=3) == first
    assert gen.prd(a, b, seed=6, num_runs=3)["precision"] != first["precision"]  # and the seed is used


def test_prd_curve_known_answer():
    p, r = gen.prd_curve(np.array([0.5, 0.5, 0.0]), np.array([0.5, 0.0, 0.5]), num_angles=1001)
    # half of each distribution's mass is shared: precision and recall both top out at 0.5
    assert p.max() == pytest.approx(0.5, abs=1e-6) and r.max() == pytest.approx(0.5, abs=1e-6)


def brute_prdc(real, fake, k):
    def radii(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=2)
        return np.sort(d, 1)[:, k]

    rr, rf = radii(real), radii(fake)
    d = np.linalg.norm(real[:, None] - fake[None], axis=2)
    precision = np.mean([any(d[i, j] < rr[i] for i in range(len(real))) for j in range(len(fake))])
    recall = np.mean([any(d[i, j] < rf[j] for j in range(len(fake))) for i in range(len(real))])
    density = sum((d[i, j] < rr[i]) for i in range(len(real)) for j in range(len(fake))) / (k * len(fake))
    coverage = np.mean([d[i].min() < rr[i] for i in range(len(real))])
    return precision, recall, density, coverage


def test_density_coverage_match_the_definitions():
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(60, 3)), rng.normal(0.7, 1.3, size=(50, 3))
    got = gen.density_coverage(real, fake, k=5)
    expected = brute_prdc(real, fake, 5)
    assert [got[k] for k in ("precision", "recall", "density", "coverage")] == pytest.approx(expected)


def test_manifold_scores_equal_the_separate_metrics_with_reused_real_radii():
    rng = np.random.default_rng(7)
    real, fake = rng.normal(size=(300, 4)), rng.normal(0.3, 1.2, size=(250, 4))
    real[1] = real[0]  # a duplicate: ties between a distance and a radius decide < against <=
    fake[:5] = real[:5]
    real_balls = gen.KnnBalls(real, 5, "real features")
    both = gen.manifold_scores(real_balls, fake)
    assert both["knn_precision_recall"] == gen.knn_precision_recall(real, fake, k=3)
    assert both["density_coverage"] == gen.density_coverage(real, fake, k=5)
    assert gen.density_coverage(real_balls, fake, k=5) == both["density_coverage"]
    with pytest.raises(AvaeError, match="radii up to k = 5"):
        gen.knn_precision_recall(real_balls, fake, k=6)


def test_knn_precision_recall_identical_and_disjoint():
    x = np.random.default_rng(5).normal(size=(200, 5))
    assert gen.knn_precision_recall(x, x)["precision"] == 1.0
    far = gen.knn_precision_recall(x, x + 100)
    assert far["precision"] == 0.0 and far["recall"] == 0.0
    half = gen.knn_precision_recall(x, np.vstack([x[:100], x[:100] + 100]))
    assert half["precision"] == pytest.approx(0.5)


def test_entropy_of_standard_normal_codes_is_close_to_l_over_2():
    l, n = 6, 5000
    z = np.random.default_rng(0).normal(size=(n, l))
    h = bandwidth(l, n).h
    result = latent.whitened_entropy(z, h)
    assert result["reference"] == 3.0
    assert result["entropy"] == pytest.approx(l / 2, abs=0.25)
    clustered = np.vstack([z[: n // 2] * 0.1 - 3, z[n // 2 :] * 0.1 + 3])  # holes lower the entropy
    assert latent.whitened_entropy(clustered, h)["entropy"] < result["entropy"] - 0.5


def test_whitening_is_uncentred():
    z = np.random.default_rng(1).normal(loc=2.0, size=(1000, 3))
    zw = latent.whiten(z)
    np.testing.assert_allclose(zw.T @ zw / (len(z) - 1), np.eye(3), atol=1e-3)
    assert abs(zw.mean()) > 0.1  # the mean is not removed


def test_gaussian_kl_closed_form():
    rng = np.random.default_rng(2)
    assert latent.gaussian_kl(rng.normal(size=(50000, 4))) == pytest.approx(0, abs=0.01)
    z = rng.normal(size=(50000, 4)) * 0.8
    assert latent.gaussian_kl(z, variance=0.64) == pytest.approx(0, abs=0.01)
    expected = 0.5 * (4 * 0.64 - 4 - 4 * math.log(0.64))
    assert latent.gaussian_kl(z) == pytest.approx(expected, abs=0.01)


def test_norm_chi2_test_accepts_the_right_scale_only():
    z = np.random.default_rng(3).normal(size=(3000, 8)) * 0.8
    assert latent.norm_chi2_test(z, 0.64)["p_value"] > 0.01
    assert latent.norm_chi2_test(z, 1.0)["p_value"] < 1e-6


def test_gaussian_kl_and_norm_test_against_a_full_covariance():
    rng = np.random.default_rng(6)
    mean, cov = np.array([1.0, -2.0, 0.5]), np.array([[2.0, 0.8, 0.0], [0.8, 1.0, 0.3], [0.0, 0.3, 0.5]])
    z = rng.multivariate_normal(mean, cov, size=40000)
    assert latent.gaussian_kl(z, cov, mean) == pytest.approx(0, abs=0.01)
    fitted = torch.distributions.MultivariateNormal(torch.tensor(z.mean(0)), torch.tensor(np.cov(z, rowvar=False)))
    isotropic = torch.distributions.MultivariateNormal(torch.zeros(3, dtype=torch.float64),
                                                       0.7 * torch.eye(3, dtype=torch.float64))
    assert latent.gaussian_kl(z, 0.7) == pytest.approx(float(torch.distributions.kl_divergence(fitted, isotropic)))
    small = z[:3000]
    assert latent.norm_chi2_test(small, cov, mean)["p_value"] > 0.01
    assert latent.norm_chi2_test(small, np.diag(np.diag(cov)), mean)["p_value"] < 1e-6  # correlations matter


def test_entropy_reference_on_gaussian_samples_lies_above_l_over_2():
    l, n, h = 16, 2000, 0.58
    reference = latent.gaussian_entropy_reference(l, n, h, seed=3)
    assert reference == latent.gaussian_entropy_reference(l, n, h, seed=3)
    # the kernel smooths N(0, I) towards N(0, (1+h²)I): above l/2, below that Gaussian's l/2·(1+ln(1+h²))
    assert l / 2 < reference < l / 2 * (1 + math.log(1 + h * h))


def test_collapsed_axes_and_reconstruction_errors():
    z = np.random.default_rng(4).normal(size=(500, 5))
    z[:, 2] *= 0.01
    assert latent.collapsed_axes(z)["count"] == 1
    x = np.zeros((2, 1, 2, 2))
    x_hat = np.full((2, 1, 2, 2), 0.5)
    assert latent.reconstruction_errors(x, x_hat) == {"mse_per_pixel": 0.25, "sse_per_image": 1.0}


# --- broken and degenerate inputs are refused, never scored -------------------------------------------
def _with_nan(x):
    x = x.copy()
    x[3, 1] = np.nan
    return x


def test_every_metric_refuses_non_finite_features():
    x = np.random.default_rng(5).normal(size=(60, 4))
    calls = [
        lambda: gen.frechet_distance(_with_nan(x), x),
        lambda: gen.frechet_distance_from_stats(np.zeros(4), np.full((4, 4), np.inf), np.zeros(4), np.eye(4)),
        lambda: gen.prd(x, _with_nan(x), seed=0, num_runs=1),
        lambda: gen.knn_precision_recall(x, _with_nan(x)),
        lambda: gen.density_coverage(_with_nan(x), x),
        lambda: latent.gaussian_kl(_with_nan(x)),
        lambda: latent.collapsed_axes(_with_nan(x)),
        lambda: latent.norm_chi2_test(_with_nan(x)),
        lambda: latent.whitened_entropy(_with_nan(x), 0.5),
        lambda: latent.reconstruction_errors(x, _with_nan(x)),
    ]
    for call in calls:
        with pytest.raises(AvaeError, match="non-finite values"):
            call()


def test_knn_metrics_need_more_points_than_k():
    x = np.random.default_rng(6).normal(size=(3, 4))
    with pytest.raises(AvaeError, match=r"k = 3 needs more than 3 points"):
        gen.knn_precision_recall(x, x, k=3)
    with pytest.raises(AvaeError, match=r"k = 5 needs more than 5 points"):
        gen.density_coverage(np.ones((10, 4)), x[:3], k=5)
    with pytest.raises(AvaeError, match="differ in dimension"):
        gen.knn_precision_recall(np.ones((10, 4)), np.ones((10, 3)), k=3)
    assert gen.knn_precision_recall(x[:2].repeat(2, 0), x[:2].repeat(2, 0), k=3)["precision"] == 1.0  # n = k + 1 works


def test_gaussian_kl_refuses_a_singular_covariance():
    rng = np.random.default_rng(7)
    with pytest.raises(AvaeError, match="singular"):
        latent.gaussian_kl(rng.normal(size=(15, 16)))  # n ≤ l: rank 14
    z = rng.normal(size=(500, 4))
    z[:, 1] = 0.5  # a collapsed axis
    with pytest.raises(AvaeError, match="singular"):
        latent.gaussian_kl(z)


def test_reconstruction_errors_refuse_mismatched_shapes():
    with pytest.raises(AvaeError, match="same shape"):
        latent.reconstruction_errors(np.zeros((4, 1, 8, 8)), np.zeros((4, 1, 8, 1)))  # would broadcast
    with pytest.raises(AvaeError, match="same shape"):
        latent.reconstruction_errors(np.zeros((4, 1, 8, 8)), np.zeros((1, 1, 8, 8)))


def test_prd_streams_of_different_seeds_share_no_clustering():
    seeds = {s: gen.run_seeds(s, 10) for s in range(5)}
    assert seeds[0] == gen.run_seeds(0, 10)  # reproducible
    for a in range(5):
        assert len(set(seeds[a])) == 10
        for b in range(a + 1, 5):
            assert not set(seeds[a]) & set(seeds[b])
    with pytest.raises(AvaeError, match="non-negative integer"):
        gen.run_seeds(-1, 2)


def test_the_catalogue_labels_prd_by_the_f_beta_each_number_is():
    from avae.metrics.catalogue import METRICS

    rng = np.random.default_rng(0)
    result = gen.prd(rng.normal(size=(400, 4)), rng.normal(0.5, 1.0, size=(400, 4)), seed=0)
    betas = {"F₈": 8.0, "F₁/₈": 1 / 8}
    for name in ("precision", "recall"):
        label = METRICS[f"sample_quality.*.prd.{name}"].label
        beta = next(b for symbol, b in betas.items() if f"({symbol})" in label)
        expected = gen.max_f_beta(np.array(result["curve_precision"]), np.array(result["curve_recall"]), beta)
        assert result[name] == pytest.approx(expected), label


def test_feature_classifier_weights_do_not_depend_on_the_thread_count(mnist_root, tmp_path, monkeypatch):
    """The classifier is trained on first use by whichever process evaluates first, with the threads
    the machine's load gave it; its weights (and every FD in its space) must not depend on them."""
    from avae import config
    from avae.data import load_data
    from avae.metrics.features import classifier_features

    data = load_data(config.resolve(None, ["data.name=mnist", f"data.root={mnist_root}"]), cut=False)
    weights, before = [], torch.get_num_threads()
    try:
        for threads in (2, 1):
            monkeypatch.setenv("AVAE_CACHE_DIR", str(tmp_path / f"cache{threads}"))
            torch.set_num_threads(threads)
            torch.manual_seed(threads)  # what ran before must not matter either
            weights.append(classifier_features(data, epochs=1, max_train=500, progress=False).net.state_dict())
        assert torch.get_num_threads() == 1  # the caller's setting is left as it was
    finally:
        torch.set_num_threads(before)
    for name, w in weights[0].items():
        assert torch.equal(w, weights[1][name]), name
