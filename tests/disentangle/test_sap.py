"""SAP on synthetic codes with known answers."""
import numpy as np

from avae.metrics import disentangle as dis

from synthetic_codes import noise, run, standardised


def test_factor_codes_score_perfectly():
    sap_good, sap_noise = run("sap", standardised)["sap"], run("sap", noise())["sap"]
    assert sap_good > 0.4 and sap_good > sap_noise + 0.35


def test_random_codes_score_near_chance():
    assert run("sap", noise())["sap"] < 0.05


def test_sap_continuous_variant():
    rng = np.random.default_rng(0)
    factors = np.stack([rng.integers(0, 5, 2000), rng.integers(0, 5, 2000)], axis=1)
    codes = np.stack([factors[:, 0], np.zeros(2000)], axis=1).astype(float)  # code 1 is constant → 0
    result = dis.sap_from_codes(codes, factors, codes, factors, continuous_factors=True)
    np.testing.assert_allclose(np.asarray(result["score_matrix"])[:, 0], [1.0, 0.0], atol=1e-12)
