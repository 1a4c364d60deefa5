"""DCI on synthetic codes with known answers."""
import numpy as np
import pytest

from avae.metrics import disentangle as dis

from synthetic_codes import noise, run, standardised


def test_factor_codes_score_perfectly():
    dci = run("dci", standardised)
    assert dci["disentanglement"] > 0.95 and dci["completeness"] > 0.95
    assert dci["informativeness_train"] == 1.0 and dci["informativeness_test"] == 1.0


def test_random_codes_score_near_chance():
    dci = run("dci", noise())
    assert dci["disentanglement"] < 0.2 and dci["informativeness_test"] < 0.45


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


def test_factors_fitted_side_by_side_keep_their_columns():
    """Each factor's importances and accuracies land in its own column, whatever order the
    factors' classifiers are fitted in (most classes first): code j alone carries factor j."""
    from sklearn.ensemble import GradientBoostingClassifier

    rng = np.random.default_rng(0)
    factors = np.stack([rng.integers(0, k, 300) for k in (2, 5, 3)], axis=1)  # fitted in the order 1, 2, 0
    codes = factors + 0.1 * rng.normal(size=factors.shape)
    result = dis.dci_from_codes(codes[:200], factors[:200], codes[200:], factors[200:], random_state=3)
    for j in range(3):
        alone = GradientBoostingClassifier(random_state=3).fit(codes[:200], factors[:200, j])
        np.testing.assert_allclose(result["importance_matrix"][:, j], np.abs(alone.feature_importances_), atol=1e-12)
        assert np.argmax(result["importance_matrix"][:, j]) == j
    assert result["informativeness_test"] == 1.0
