"""The BetaVAE score on synthetic codes with known answers."""
from synthetic_codes import K, noise, run, standardised


def test_factor_codes_score_perfectly():
    assert run("beta_vae", standardised)["eval_accuracy"] >= 0.99


def test_random_codes_score_near_chance():
    assert run("beta_vae", noise())["eval_accuracy"] < 1 / K + 0.15
