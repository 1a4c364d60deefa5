"""The BetaVAE score on synthetic codes with known answers."""
import pytest

from synthetic_codes import K, noise, run, standardised


def test_factor_codes_score_perfectly():
    assert run("beta_vae", standardised)["eval_accuracy"] >= 0.99


def test_random_codes_score_near_chance():
    assert run("beta_vae", noise())["eval_accuracy"] < 1 / K + 0.15


def test_reports_the_binomial_standard_error_of_its_eval_accuracy():
    result = run("beta_vae", noise())
    p, n = result["eval_accuracy"], result["params"]["num_eval"]
    assert 0 < p < 1 and result["standard_error"] == pytest.approx((p * (1 - p) / n) ** 0.5)
    assert run("beta_vae", standardised)["standard_error"] == pytest.approx(0.0, abs=0.01)
