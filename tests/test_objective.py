"""The AVAE's parts in a loop of one's own: AggregateKL, the σ rule and the sampler on a
user-written MLP autoencoder, and the AVAE model built from the same parts."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import avae
from avae.errors import AvaeError
from avae.kde import kl_to_standard_normal
from avae.objective import log_density_floor

M, K, BATCH = 200, 10, 50  # KDE size, steps between re-encodings, batch


@pytest.fixture
def one_thread():
    """Tiny networks run fastest on one thread (and fight no other test for the cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def correlated_array(n=2000, dim=10, seed=1) -> torch.Tensor:
    """Points near a 2-D plane in 10-D (anisotropic, correlated), standardised per feature."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, 2)) * [2.0, 1.0] + 4.0) @ rng.normal(size=(2, dim)) + 0.3 * rng.normal(size=(n, dim))
    return torch.as_tensor((x - x.mean(0)) / x.std(0), dtype=torch.float32)


def train_own_autoencoder(x: torch.Tensor, epochs: int, with_kl: bool):
    """A user's loop: their MLP encoder and decoder, the AVAE's KL against a lagging KDE set of m
    training points redrawn each epoch, σ from the validation error after each epoch."""
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(x.shape[1], 64), nn.ReLU(), nn.Linear(64, 2))
    decoder = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, x.shape[1]))
    kl = avae.AggregateKL(latent_dim=2, kde_size=M)
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=3e-3)
    train, val = x[:1800], x[1800:]
    sigma, rng = math.sqrt(10.0), np.random.default_rng(0)
    for _ in range(epochs):
        order = rng.permutation(len(train))
        kde_set, sgd = train[order[:M]], order[M:]
        for step, start in enumerate(range(0, len(sgd), BATCH)):
            if step % K == 0:
                with torch.no_grad():
                    kde_codes = encoder(kde_set)
            batch = train[sgd[start : start + BATCH]]
            z = encoder(batch)
            recon = (decoder(z) - batch).pow(2).sum(1).mean()
            loss = recon / sigma + (kl(z, kde_codes) if with_kl else 0.0)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            sigma = avae.sigma_from_validation(float((decoder(encoder(val)) - val).pow(2).sum(1).mean()))
    with torch.no_grad():
        return encoder(x).double(), kl


def test_a_users_own_mlp_autoencoder_becomes_the_avae(one_thread):
    x = correlated_array()
    z, kl = train_own_autoencoder(x, epochs=30, with_kl=True)
    target = 1 - kl.h**2  # the AVAE's sampling variance
    assert kl.sampling_std**2 == pytest.approx(target)
    cov = torch.cov(z.T)
    assert z.mean(0).abs().max() < 0.1
    torch.testing.assert_close(cov.diagonal(), torch.full((2,), target, dtype=torch.float64), rtol=0.1, atol=0)
    assert abs(cov[0, 1]) < 0.1
    assert z.pow(2).sum(1).mean() / 2 == pytest.approx(target, rel=0.1)  # E‖z‖² = l(1−h²)
    # the same loop without the KL leaves codes far from it
    plain, _ = train_own_autoencoder(x, epochs=5, with_kl=False)
    plain_cov = torch.cov(plain.T)
    assert plain_cov.diagonal().max() > 1.5 * target or abs(plain_cov[0, 1]) > 0.3


def test_aggregate_kl_is_the_kde_kl_with_the_avaes_settings():
    kl = avae.AggregateKL(3, 50)
    assert kl.h == pytest.approx(avae.bandwidth(3, 50).h)
    assert kl.log_floor == pytest.approx(log_density_floor(kl.h, 3, 1 - 1e-6))
    g = torch.Generator().manual_seed(0)
    z, centres = torch.randn(8, 3, generator=g, requires_grad=True), torch.randn(50, 3, generator=g)
    expected = kl_to_standard_normal(z, centres, kl.h, log_floor=kl.log_floor, log_base=10.0)
    torch.testing.assert_close(kl(z, centres), expected)
    kl(z, centres.requires_grad_()).backward()
    assert z.grad is not None and centres.grad is None  # the KDE codes are constants
    natural = avae.AggregateKL(3, 50, log_base=math.e, density_floor_quantile=None, prior_floor=1e-30)
    torch.testing.assert_close(natural(z, centres),
                               kl_to_standard_normal(z, centres, kl.h, log_base=math.e, prior_log_floor=math.log(1e-30)))
    samples = kl.sample_latent(20000, torch.Generator().manual_seed(1))
    assert samples.var(0).mean().item() == pytest.approx(1 - kl.h**2, rel=0.03)


@pytest.mark.parametrize("latent_dim", [16, 64])
def test_the_kl_estimate_is_below_zero_at_the_target_and_above_it_for_shrunken_codes(latent_dim):
    """As docs/method.md explains: at the sampler, E[estimate] = −KL(q ‖ q̂) < 0; codes shrunk towards 0 score above 0."""
    kl, gen = avae.AggregateKL(latent_dim, 1000), torch.Generator().manual_seed(0)

    def estimate(scale):
        draw = lambda n: torch.randn(n, latent_dim, generator=gen) * kl.sampling_std * scale  # noqa: E731
        return np.mean([float(kl(draw(100), draw(1000))) for _ in range(5)])

    at_target, shrunken = estimate(1.0), estimate(0.3)
    assert at_target < -0.05 and shrunken > 1.0


def test_aggregate_kl_rejects_bad_shapes_and_settings():
    kl = avae.AggregateKL(3, 50)
    with pytest.raises(AvaeError, match="KDE codes"):
        kl(torch.zeros(4, 3), torch.zeros(49, 3))
    with pytest.raises(AvaeError, match="KDE codes"):
        kl(torch.zeros(4, 2), torch.zeros(50, 3))
    for bad in ({"density_floor_quantile": 1.5}, {"prior_floor": 0.0}, {"log_base": 1.0}):
        with pytest.raises(AvaeError):
            avae.AggregateKL(3, 50, **bad)


def test_sigma_rule():
    assert avae.sigma_from_validation(4.0) == 2.0
    assert avae.sigma_from_validation(0.0) == pytest.approx(1e-6)  # never zero: it divides the loss


def test_bandwidth_is_callable_from_the_package_and_stays_a_module():
    from avae import kde_bandwidth as module

    bw = avae.bandwidth(4, 300)
    assert (bw.h_opt, bw.h) == (module.bandwidth(4, 300).h_opt, module.bandwidth(4, 300).h)
    assert bw.sampling_std == pytest.approx(math.sqrt(1 - bw.h**2))
