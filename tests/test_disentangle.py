"""Disentanglement metrics on synthetic ground truths with known answers.

The 'images' of `SyntheticFactors` store their factor classes, so a representation can be exactly
the factors, a rotation of them, noise, or an entangled mix.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from avae.data.factors import FactorImages
from avae.errors import AvaeError
from avae.metrics import disentangle as dis

DATA = dis.SyntheticFactors((3, 4, 5, 6))
SIZES = np.asarray(DATA.factor_sizes, dtype=np.float64)
K = len(SIZES)

# Small explicit sizes: the tests check the definitions, not the estimators' variance.
SMALL = {
    "beta_vae": {"batch_size": 32, "num_train": 300, "num_eval": 200},
    "factor_vae": {"batch_size": 32, "num_train": 300, "num_eval": 200, "num_variance_estimate": 1000},
    "mig": {"num_train": 2000},
    "dci": {"num_train": 400, "num_test": 200},
    "sap": {"num_train": 1000, "num_test": 500},
    "pca_factor_vae": {"images_per_vote": 48, "num_train": 120, "num_eval": 60},
    "pca_mig": {"images_per_vote": 48, "num_votes": 120, "num_train": 2000},
}


def standardised(images) -> np.ndarray:
    """The factors themselves, each with zero mean and unit variance: a perfectly disentangled code."""
    classes = DATA.read_factors(images)
    return (classes - (SIZES - 1) / 2) / np.sqrt((SIZES**2 - 1) / 12)


def noise(seed: int = 0):
    """Codes that ignore the image: no information about any factor."""
    rng = np.random.default_rng(seed)
    return lambda images: rng.normal(size=(len(images), K))


def rotated(q: np.ndarray):
    """z = f Q: every factor lies along a row of the orthogonal Q."""
    return lambda images: standardised(images) @ q


def random_rotation(seed: int, d: int = K) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


HADAMARD = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2.0  # maximally mixing
MIX = np.random.default_rng(7).normal(size=(K, 6))
TABLE = np.random.default_rng(8).normal(size=(len(DATA), 6))


def entangled(images) -> np.ndarray:
    """A deterministic function of the image: a dense mix of the factors plus per-image 'noise'."""
    return standardised(images) @ MIX + 0.5 * TABLE[DATA.index_of(DATA.read_factors(images))]


def run(metric: str, represent, seed=0, **extra) -> dict:
    return dis.METRICS[metric](DATA, represent, seed, **{**SMALL[metric], **extra})


# ------------------------------------------------------------------------------------------------
# Known answers through the full pipeline


def test_factor_codes_score_perfectly():
    assert run("factor_vae", standardised)["eval_accuracy"] == 1.0
    assert run("beta_vae", standardised)["eval_accuracy"] >= 0.99
    assert run("mig", standardised)["mig"] > 0.97  # bijection of one factor per code; only estimator bias left
    dci = run("dci", standardised)
    assert dci["disentanglement"] > 0.95 and dci["completeness"] > 0.95
    assert dci["informativeness_train"] == 1.0 and dci["informativeness_test"] == 1.0
    sap_good, sap_noise = run("sap", standardised)["sap"], run("sap", noise())["sap"]
    assert sap_good > 0.4 and sap_good > sap_noise + 0.35
    pca = run("pca_factor_vae", standardised)
    assert pca["eval_accuracy"] == 1.0
    np.testing.assert_allclose(np.abs(pca["directions"]), np.eye(K), atol=1e-9)


def test_random_codes_score_near_chance():
    chance = 1 / K
    assert run("factor_vae", noise())["eval_accuracy"] < chance + 0.15
    assert run("beta_vae", noise())["eval_accuracy"] < chance + 0.15
    assert run("mig", noise())["mig"] < 0.03
    dci = run("dci", noise())
    assert dci["disentanglement"] < 0.2 and dci["informativeness_test"] < 0.45
    assert run("sap", noise())["sap"] < 0.05
    assert run("pca_factor_vae", noise())["eval_accuracy"] < chance + 0.25
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


def test_pruning_drops_a_tiny_dimension_that_would_take_every_vote():
    # Dimension 0 is a tiny constant, except for the rare image with factors (0, 0, 0, 0): most
    # votes see zero local variance there (ratio 0, first index wins ties) unless it is pruned.
    def with_tiny(images):
        classes = DATA.read_factors(images)
        rare = np.all(classes == 0, axis=1).astype(np.float64)
        return np.concatenate([1e-3 * rare[:, None], standardised(images)], axis=1)

    kept = run("factor_vae", with_tiny)
    assert kept["active_dims"] == [False, True, True, True, True] and kept["num_active_dims"] == K
    assert kept["eval_accuracy"] == 1.0
    unpruned = run("factor_vae", with_tiny, prune_threshold=0.0)
    assert unpruned["num_active_dims"] == K + 1
    assert unpruned["eval_accuracy"] < 0.5
    nothing_active = run("factor_vae", lambda im: 1e-4 * standardised(im))
    assert nothing_active["eval_accuracy"] == 0.0 and nothing_active["num_active_dims"] == 0


# ------------------------------------------------------------------------------------------------
# Determinism and seeds


@pytest.mark.parametrize("metric", list(dis.METRICS))
def test_same_seed_same_numbers_other_seed_other_numbers(metric):
    first, again, other = run(metric, entangled, 11), run(metric, entangled, 11), run(metric, entangled, 12)
    assert json.dumps(first) == json.dumps(again)  # also: the result is JSON-ready
    assert first["params"]["seed"] == 11
    assert first != other


def test_generator_seed_is_accepted_and_reproducible():
    a = run("mig", entangled, np.random.default_rng(4))
    b = run("mig", entangled, np.random.default_rng(4))
    assert a["mig"] == b["mig"] and a["params"]["seed"] == "generator"
    with pytest.raises(AvaeError):
        run("mig", entangled, -1)


def test_results_do_not_depend_on_the_encoding_batch():
    for metric in ("factor_vae", "beta_vae", "pca_factor_vae"):
        assert run(metric, entangled, 5, encode_batch=7) == run(metric, entangled, 5)


def test_phases_draw_from_independent_streams():
    # More eval votes leave the training votes (and so the classifier) unchanged.
    a = run("factor_vae", entangled, 3)
    b = run("factor_vae", entangled, 3, num_eval=400)
    assert a["train_accuracy"] == b["train_accuracy"] and a["classifier"] == b["classifier"]


def test_pca_mig_uses_the_same_directions_as_pca_factor_vae():
    fvae = run("pca_factor_vae", entangled, 2, num_train=120)
    mig = run("pca_mig", entangled, 2)
    np.testing.assert_array_equal(fvae["directions"], mig["directions"])
    given = run("pca_mig", entangled, 2, directions=fvae["directions"])
    assert given["mig"] == mig["mig"] and given["params"]["directions"] == "given"
    assert given["num_encoded"] == SMALL["pca_mig"]["num_train"]


def test_evaluate_runs_each_metric_as_its_own_call():
    sizes = {m: SMALL[m] for m in ("mig", "pca_factor_vae", "pca_mig")}
    results = dis.evaluate(DATA, entangled, 9, ["mig", "pca_factor_vae", "pca_mig"], **sizes)
    assert results["mig"] == run("mig", entangled, 9)
    assert results["pca_mig"]["mig"] == run("pca_mig", entangled, 9)["mig"]
    assert results["pca_mig"]["params"]["directions"] == "pca_factor_vae"
    with pytest.raises(AvaeError, match="unknown metric"):
        dis.evaluate(DATA, entangled, 9, ["nope"])
    everything, directions = dis.evaluate_all(DATA, standardised, 9, "fast", dci=SMALL["dci"])
    assert set(everything) == set(dis.METRICS)
    assert all(isinstance(r["score"], float) for r in everything.values())
    np.testing.assert_allclose(np.abs(directions), np.eye(K), atol=1e-9)


# ------------------------------------------------------------------------------------------------
# Presets and parameters


def test_presets_and_explicit_sizes():
    assert dis.PRESETS["default"]["factor_vae"] == {"batch_size": 64, "num_train": 10_000, "num_eval": 5_000,
                                                    "num_variance_estimate": 10_000, "prune_threshold": 0.05}
    assert dis.PRESETS["default"]["pca_factor_vae"]["images_per_vote"] == 10_000
    assert dis.PRESETS["default"]["pca_mig"]["num_bins"] == 10 and dis.PRESETS["default"]["mig"]["num_bins"] == 20
    fast = dis.mig_score(DATA, standardised, 0, preset="fast")
    assert fast["params"]["num_train"] == 2000 and fast["num_encoded"] == 2000
    fast_sap = dis.sap_score(DATA, standardised, 0, preset="fast", num_test=300)
    assert (fast_sap["params"]["num_train"], fast_sap["params"]["num_test"]) == (2000, 300)
    with pytest.raises(AvaeError, match="unknown metric preset"):
        dis.mig_score(DATA, standardised, 0, preset="quick")
    with pytest.raises(AvaeError, match="positive integer"):
        dis.mig_score(DATA, standardised, 0, num_train=0)


def test_bad_inputs_are_reported():
    with pytest.raises(AvaeError, match="single value"):
        dis.mig_score(dis.SyntheticFactors((1, 4)), lambda im: np.zeros((len(im), 2)), 0, num_train=10)
    with pytest.raises(AvaeError, match="shape"):
        dis.mig_score(DATA, lambda im: np.zeros((3, 2)), 0, num_train=10)
    with pytest.raises(AvaeError, match="more images per vote"):
        dis.smallest_variance_directions(np.zeros((2, 4, 4)))


def test_works_on_a_factor_images_subclass_and_torch_codes():
    class Grid(FactorImages):
        shape = (1, 1, 3)
        factor_names = ("a", "b", "c")
        factor_sizes = (3, 4, 5)
        factor_grids = tuple(np.arange(s, dtype=float) for s in factor_sizes)

        def images(self, idx):
            return torch.from_numpy(self.factors(idx).astype(np.uint8)[:, None, None, :].copy())

    def represent(images):  # a torch "encoder"
        return images.reshape(len(images), -1).float()

    result = dis.factor_vae_score(Grid(), represent, 0, batch_size=16, num_train=100, num_eval=50,
                                  num_variance_estimate=500)
    assert result["eval_accuracy"] == 1.0


# ------------------------------------------------------------------------------------------------
# Scoring functions on arrays


def test_histogram_discretize_matches_the_reference_binning():
    z = np.array([[0.0], [0.5], [1.0], [0.99], [0.01]])
    np.testing.assert_array_equal(dis.histogram_discretize(z, 2)[:, 0], [1, 2, 2, 2, 1])
    constant = dis.histogram_discretize(np.ones((4, 1)), 20)
    assert len(np.unique(constant)) == 1


def test_mig_from_codes_known_values():
    rng = np.random.default_rng(0)
    factors = np.stack([rng.integers(0, 4, 5000), rng.integers(0, 5, 5000)], axis=1)
    perfect = dis.mig_from_codes(factors.astype(float), factors)
    assert perfect["mig"] > 0.99
    duplicated = dis.mig_from_codes(factors[:, [0, 0, 1, 1]].astype(float), factors)
    assert duplicated["mig"] == 0.0  # two codes share each factor: no gap
    single = dis.mig_from_codes(factors[:, :1].astype(float), factors)  # one code: second best is 0
    assert single["mig_per_factor"][0] == pytest.approx(1.0) and single["mig"] < 0.55


def test_factor_vae_from_codes_by_hand():
    variance_codes = np.random.default_rng(0).normal(size=(100, 3))
    # vote codes (votes, batch, d): the dimension with zero spread wins the vote
    votes = np.random.default_rng(1).normal(size=(4, 8, 3))
    votes[0, :, 0] = votes[1, :, 0] = 1.0
    votes[2, :, 2] = votes[3, :, 2] = 1.0
    labels = np.array([0, 0, 1, 0])  # vote 2 is labelled 1 and vote 3 labelled 0, both pick dimension 2
    result = dis.factor_vae_from_codes(variance_codes, votes, labels, votes, labels, num_factors=2)
    np.testing.assert_array_equal(result["train_votes"], [[2, 0, 1], [0, 0, 1]])
    assert result["train_accuracy"] == 0.75  # dimension 2 is a tie → factor 0; 3 of 4 votes agree


def test_dci_importance_scores():
    eye = np.eye(4)
    assert dis.dci_disentanglement(eye) == pytest.approx(1.0)
    assert dis.dci_completeness(eye) == pytest.approx(1.0)
    uniform = np.ones((4, 4))
    assert dis.dci_disentanglement(uniform) == pytest.approx(0.0, abs=1e-9)
    assert dis.dci_completeness(uniform) == pytest.approx(0.0, abs=1e-9)
    one_code_two_factors = np.array([[1.0, 1.0], [0.0, 0.0]])
    assert dis.dci_disentanglement(one_code_two_factors) == pytest.approx(0.0, abs=1e-9)
    assert dis.dci_completeness(one_code_two_factors) == pytest.approx(1.0)
    assert dis.dci_disentanglement(np.zeros((3, 2))) == pytest.approx(0.0, abs=1e-6)  # no importance at all


def test_sap_continuous_variant():
    rng = np.random.default_rng(0)
    factors = np.stack([rng.integers(0, 5, 2000), rng.integers(0, 5, 2000)], axis=1)
    codes = np.stack([factors[:, 0], np.zeros(2000)], axis=1).astype(float)  # code 1 is constant → 0
    result = dis.sap_from_codes(codes, factors, codes, factors, continuous_factors=True)
    np.testing.assert_allclose(np.asarray(result["score_matrix"])[:, 0], [1.0, 0.0], atol=1e-12)


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
