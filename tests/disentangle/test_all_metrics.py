"""What every disentanglement metric shares: seeds and streams, encoding batches, presets, input checks,
and `scores`, which runs several."""
import json

import numpy as np
import pytest

from avae.errors import AvaeError
from avae.metrics import disentangle as dis

from synthetic_codes import DATA, entangled, K, run, SMALL, standardised


@pytest.mark.parametrize("metric", list(dis.METRICS))
def test_same_seed_same_numbers_other_seed_other_numbers(metric):
    first, again, other = run(metric, entangled, 11), run(metric, entangled, 11), run(metric, entangled, 12)
    assert json.dumps(first) == json.dumps(again)  # also: the result is JSON-ready
    assert first["params"]["seed"] == 11
    assert first != other


def test_results_do_not_depend_on_the_encoding_batch():
    for metric in ("factor_vae", "beta_vae", "pca_factor_vae"):
        assert run(metric, entangled, 5, encode_batch=7) == run(metric, entangled, 5)


def test_scores_runs_each_metric_as_its_own_call():
    sizes = {m: SMALL[m] for m in ("mig", "pca_factor_vae", "pca_mig")}
    results = dis.scores(DATA, entangled, 9, ["mig", "pca_factor_vae", "pca_mig"], **sizes)
    assert results["mig"] == run("mig", entangled, 9)
    assert results["pca_mig"]["mig"] == run("pca_mig", entangled, 9)["mig"]
    assert results["pca_mig"]["params"]["directions"] == "pca_factor_vae"
    with pytest.raises(AvaeError, match="unknown metric"):
        dis.scores(DATA, entangled, 9, ["nope"])
    everything, directions = dis.scores_with_directions(DATA, standardised, 9, "fast", dci=SMALL["dci"])
    assert set(everything) == set(dis.METRICS)
    assert all(isinstance(r["score"], float) for r in everything.values())
    np.testing.assert_allclose(np.abs(directions), np.eye(K), atol=1e-9)


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
