"""KDE densities against float64 brute force; the KL gradient reaches only the batch codes."""
import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from avae.kde import kl_to_standard_normal, log_density, loo_entropy
from avae.objective import log_density_floor


def brute_log_density(z, c, h):
    """log (1/m) Σ_j N(z; c_j, h² I), float64, one point at a time."""
    l = z.shape[1]
    out = []
    for point in z:
        log_k = -((point - c) ** 2).sum(1) / (2 * h * h) - l * math.log(h) - 0.5 * l * math.log(2 * math.pi)
        out.append(logsumexp(log_k) - math.log(len(c)))
    return np.array(out)


@pytest.mark.parametrize("l,h", [(2, 0.3), (16, 0.58), (128, 0.75)])
def test_log_density_matches_float64_brute_force(l, h):
    rng = np.random.default_rng(l)
    z, c = rng.normal(size=(20, l)), rng.normal(size=(300, l))
    expected = brute_log_density(z, c, h)
    got = log_density(torch.tensor(z), torch.tensor(c), h, chunk=64)  # several chunks
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-9)
    got32 = log_density(torch.tensor(z).float(), torch.tensor(c).float(), h)
    np.testing.assert_allclose(got32.numpy(), expected, rtol=1e-4)


def test_unnormalised_density_drops_exactly_the_2pi_constant():
    z, c = torch.randn(5, 7, dtype=torch.float64), torch.randn(50, 7, dtype=torch.float64)
    diff = log_density(z, c, 0.5, normalised=False) - log_density(z, c, 0.5)
    assert torch.allclose(diff, torch.full((5,), 3.5 * math.log(2 * math.pi), dtype=torch.float64))


def test_kl_estimate_known_value_with_floor_and_base():
    rng = np.random.default_rng(0)
    z, c, h, log_eps = rng.normal(size=(10, 4)), rng.normal(size=(100, 4)), 0.6, math.log(1e-3)
    log_q = brute_log_density(z, c, h) + 2 * math.log(2 * math.pi)  # without (2π)^{l/2}
    log_p = -0.5 * (z**2).sum(1)
    expected = np.mean(np.logaddexp(log_q, log_eps) - np.logaddexp(log_p, math.log(1e-30))) / math.log(10)
    got = kl_to_standard_normal(torch.tensor(z), torch.tensor(c), h, log_floor=log_eps, prior_log_floor=math.log(1e-30))
    assert float(got) == pytest.approx(expected, rel=1e-10)
    natural = kl_to_standard_normal(torch.tensor(z), torch.tensor(c), h, log_floor=log_eps, log_base=math.e,
                                    prior_log_floor=math.log(1e-30))
    assert float(natural) == pytest.approx(expected * math.log(10), rel=1e-10)
    exact = np.mean(np.logaddexp(log_q, log_eps) - log_p) / math.log(10)  # default: no floor on the prior
    assert float(kl_to_standard_normal(torch.tensor(z), torch.tensor(c), h, log_floor=log_eps)) == pytest.approx(exact)


def test_far_codes_are_pulled_back_unless_the_prior_is_floored():
    """With the authors' p + 1e-30 guard, a code with ‖z‖² > 138 sits where both densities are floored."""
    centres, log_eps = torch.randn(100, 6, dtype=torch.float64), math.log(8.3e-7)
    for prior_floor, pulled in ((None, True), (math.log(1e-30), False)):
        z = torch.full((1, 6), 6.0, dtype=torch.float64, requires_grad=True)  # ‖z‖² = 216
        kl_to_standard_normal(z, centres, 0.43, log_floor=log_eps, prior_log_floor=prior_floor).backward()
        radial = float((z.grad * z.detach()).sum())  # > 0: descent moves z towards the origin
        assert radial > 50 if pulled else abs(radial) < 1e-12


def test_kl_gradient_reaches_batch_codes_only():
    z = torch.randn(8, 5, requires_grad=True)
    centres = torch.randn(64, 5, requires_grad=True)
    kl_to_standard_normal(z, centres, 0.5).backward()
    assert centres.grad is None
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_kl_is_lowest_when_codes_match_the_target():
    """Codes spread like N(0,(1-h²)I) beat codes bunched at the origin or blown up."""
    h, l = 0.3, 2
    gen = torch.Generator().manual_seed(0)
    kl = {}
    for scale in (0.6, math.sqrt(1 - h * h), 1.3):
        z = torch.randn(500, l, generator=gen) * scale
        c = torch.randn(5000, l, generator=gen) * scale
        kl[scale] = float(kl_to_standard_normal(z, c, h))
    best = min(kl, key=kl.get)
    assert best == pytest.approx(math.sqrt(1 - h * h))


def test_loo_entropy_matches_brute_force_and_gaussian_entropy():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(200, 3))
    expected = -np.mean([brute_log_density(z[i : i + 1], np.delete(z, i, 0), 0.4)[0] for i in range(len(z))])
    assert loo_entropy(torch.tensor(z), 0.4, chunk=33) == pytest.approx(expected, rel=1e-10)
    # N(0, I) in 2-D: H = log(2πe) ≈ 2.838 nats; the KDE estimate is close for small h and large n
    big = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert loo_entropy(big, 0.2) == pytest.approx(math.log(2 * math.pi * math.e), abs=0.08)


@pytest.mark.parametrize("l,h,c,eps", [(16, 0.5843, 1 - 1e-6, 1.2e-9), (6, 0.4254, 1 - 1e-6, 8.3e-7), (128, 0.7459, 0.9, 9.2e-17)])
def test_density_floor_matches_the_papers_epsilons(l, h, c, eps):
    assert math.exp(log_density_floor(h, l, c)) == pytest.approx(eps, rel=0.05)
