"""The FactorVAE score on synthetic codes with known answers."""
import numpy as np
import torch

from avae.data.factors import FactorImages
from avae.metrics import disentangle as dis

from synthetic_codes import DATA, entangled, K, noise, run, standardised


def test_factor_codes_score_perfectly():
    assert run("factor_vae", standardised)["eval_accuracy"] == 1.0


def test_random_codes_score_near_chance():
    assert run("factor_vae", noise())["eval_accuracy"] < 1 / K + 0.15


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


def test_phases_draw_from_independent_streams():
    # More eval votes leave the training votes (and so the classifier) unchanged.
    a = run("factor_vae", entangled, 3)
    b = run("factor_vae", entangled, 3, num_eval=400)
    assert a["train_accuracy"] == b["train_accuracy"] and a["classifier"] == b["classifier"]


def test_works_on_a_factor_images_subclass_and_torch_codes():
    class Grid(FactorImages):
        shape = (1, 1, 3)
        factor_names = ("a", "b", "c")
        factor_sizes = (3, 4, 5)
        factor_grids = tuple(np.arange(s, dtype=float) for s in factor_sizes)

        def images(self, idx):
            return torch.from_numpy(self.factor_classes(idx).astype(np.uint8)[:, None, None, :].copy())

    def represent(images):  # a torch "encoder"
        return images.reshape(len(images), -1).float()

    result = dis.factor_vae_score(Grid(), represent, 0, batch_size=16, num_train=100, num_eval=50,
                                  num_variance_estimate=500)
    assert result["eval_accuracy"] == 1.0


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
