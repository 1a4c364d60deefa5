"""The PCA-direction variants (PCA-FactorVAE, PCA-MIG) on synthetic codes with known answers."""
import numpy as np
import pytest

from avae.metrics import disentangle as dis

from synthetic_codes import DATA, entangled, HADAMARD, K, noise, random_rotation, rotated, run, SMALL, standardised


def test_factor_codes_score_perfectly():
    pca = run("pca_factor_vae", standardised)
    assert pca["eval_accuracy"] == 1.0
    np.testing.assert_allclose(np.abs(pca["directions"]), np.eye(K), atol=1e-9)


def test_random_codes_score_near_chance():
    assert run("pca_factor_vae", noise())["eval_accuracy"] < 1 / K + 0.25
    assert run("pca_mig", noise())["mig"] < 0.03


def test_directions_recover_a_rotation():
    q = random_rotation(3)
    found = dis.discover_directions(DATA, rotated(q), 0, images_per_vote=48, num_votes=120)
    assert found["votes_per_factor"].min() > 0
    np.testing.assert_allclose(np.abs(found["directions"] @ q.T), np.eye(K), atol=1e-8)  # D = rows of Q up to sign
    off_diagonal = found["angles_deg"][~np.eye(K, dtype=bool)]
    np.testing.assert_allclose(off_diagonal, 90.0, atol=1e-5)
    assert run("pca_factor_vae", rotated(q))["eval_accuracy"] == 1.0


def test_pca_mig_sees_through_a_rotation_that_axis_mig_misses():
    mixed = rotated(HADAMARD)
    assert run("mig", mixed)["mig"] < 0.05
    assert run("factor_vae", mixed)["eval_accuracy"] < 0.45
    pca = run("pca_mig", mixed)
    assert pca["mig"] > 0.9
    assert pca["params"]["num_bins"] == 10 and run("mig", mixed)["params"]["num_bins"] == 20


def test_pca_mig_uses_the_same_directions_as_pca_factor_vae():
    fvae = run("pca_factor_vae", entangled, 2, num_train=120)
    mig = run("pca_mig", entangled, 2)
    np.testing.assert_array_equal(fvae["directions"], mig["directions"])
    given = run("pca_mig", entangled, 2, directions=fvae["directions"])
    assert given["mig"] == mig["mig"] and given["params"]["directions"] == "given"
    assert given["num_encoded"] == SMALL["pca_mig"]["num_train"]


def test_direction_aggregation_and_angles():
    rng = np.random.default_rng(0)
    u = np.array([1.0, 0.0, 0.0])
    votes = u + 0.05 * rng.normal(size=(50, 3))
    votes /= np.linalg.norm(votes, axis=1, keepdims=True)
    votes[::2] *= -1  # signs do not matter
    found = dis.directions_from_votes(votes, np.zeros(50, dtype=int), num_factors=2)
    assert abs(found[0] @ u) > 0.999 and found[0, 0] > 0
    np.testing.assert_array_equal(found[1], 0.0)  # a factor with no vote
    sixty = dis.direction_angles(np.array([[1.0, 0.0], [-0.5, np.sqrt(3) / 2]]))  # 120° folds to 60°
    assert sixty[0, 1] == pytest.approx(60.0) and sixty[0, 0] == 0.0
    with_zero = dis.direction_angles(found)
    assert np.isnan(with_zero[0, 1])
    one = dis.smallest_variance_directions(np.stack([rng.normal(size=200), rng.normal(size=200), np.zeros(200)], 1))
    np.testing.assert_allclose(one[0], [0.0, 0.0, 1.0], atol=1e-12)


def test_vote_accuracies_report_their_standard_error():
    for metric in ("factor_vae", "pca_factor_vae"):
        result = run(metric, noise())
        p, n = result["eval_accuracy"], result["params"]["num_eval"]
        assert result["standard_error"] == pytest.approx((p * (1 - p) / n) ** 0.5)
