"""The own-loop recipe of docs/python-api.md ("The AVAE in your own loop") brings the codes of 2-D toy data to the
AVAE's sampler, and `avae.latent_fit` scores codes against a sampler: known answers and refusals."""
import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

import avae
from avae.metrics import latent

PYTHON_API = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"
# KS distance of ‖z‖²/(1−h²) to χ²_2 on 4,000 held-out codes. The documented loop: 0.015–0.067 over 5 seeds of
# each set; the recipe before (one hidden layer, re-encoding every 10 steps, no σ floor, m = 200): 0.27–0.51
# (benchmarks/own_loop_toy.py).
KS_BOUND = 0.1
KL_BOUND = 0.05  # Gaussian-fit KL to N(0, (1−h²)I), nats; documented loop ≤ 0.021, the recipe before ≥ 0.13


def ring(n, gen):
    angle = 2 * math.pi * torch.rand(n, generator=gen)
    return torch.stack([angle.cos(), angle.sin()], 1) * (1 + 0.1 * torch.randn(n, 1, generator=gen))


def three_gaussians(n, gen):
    angles = torch.tensor([90.0, 210.0, 330.0]) * math.pi / 180
    centres = 2 * torch.stack([angles.cos(), angles.sin()], 1)
    return centres[torch.randint(0, 3, (n,), generator=gen)] + 0.4 * torch.randn(n, 2, generator=gen)


def readme_loop(data, seed):
    """Run the documented own-loop block as written, its data lines replaced by `data` and its seed by `seed`."""
    section = PYTHON_API.read_text().split("The AVAE in your own loop", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    head, anchor, tail = block.partition("data = (data - data.mean(0)) / data.std(0)\n")
    assert anchor and "torch.manual_seed(0)" in head, "the documented loop no longer starts from data and a seed"
    imports = "".join(line + "\n" for line in head.splitlines() if line.startswith(("import ", "from ")))
    namespace = {"toy_data": data}
    exec(f"{imports}torch.manual_seed({seed})\ndata = toy_data\n{anchor}{tail}", namespace)
    return namespace


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # networks this small run fastest on one thread
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("make", [ring, three_gaussians])
def test_the_readme_loop_brings_toy_codes_to_the_sampler(make, seed, one_thread, capsys):
    points = make(6000, torch.Generator().manual_seed(1000 + seed))
    points = (points - points[:2000].mean(0)) / points[:2000].std(0)
    ns = readme_loop(points[:2000], seed)
    assert ns["sigma"] == ns["sigma_min"] == 1.0  # the data reconstruct almost exactly: the floor holds σ
    with torch.no_grad():
        fit = avae.latent_fit(ns["encoder"](points[2000:]), ns["kl"].h)  # 4,000 points it never saw
    assert fit.n == 4000 and fit.sampling_variance == pytest.approx(1 - ns["kl"].h ** 2)
    assert fit.ks_statistic < KS_BOUND, fit
    assert fit.gaussian_kl_to_sampling_distribution < KL_BOUND, fit
    assert re.fullmatch(r"KS 0\.\d{3}, Gaussian KL 0\.\d{3}\nh_opt 0\.\d+, h 0\.\d+, sampling std 0\.\d+\n",
                        capsys.readouterr().out)


def chi2_quantile_codes(n, variance):
    """n 2-D codes whose ‖z‖²/variance are the χ²_2 quantiles at (i − ½)/n, at spread angles."""
    r2 = stats.chi2(df=2).ppf((np.arange(n) + 0.5) / n) * variance
    angle = np.arange(n) * 2.399963  # the golden angle: directions spread evenly
    return np.sqrt(r2)[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)


def test_latent_fit_known_answers():
    h = avae.bandwidth(2, 800).h
    v = 1 - h * h
    # codes at the χ² quantiles of their own sampler: the KS distance is exactly 1/(2n)
    exact = avae.latent_fit(chi2_quantile_codes(500, v), h)
    assert exact.ks_statistic == pytest.approx(1 / 1000, rel=1e-6) and exact.p_value > 0.99
    assert exact.latent_dim == 2 and exact.n == 500
    # Gaussian samples of the sampler's variance: KS at the sampling noise, KLs the closed forms
    rng = np.random.default_rng(0)
    z = rng.standard_normal((20000, 3)) * math.sqrt(v)
    fit = avae.latent_fit(z, h)
    assert fit.ks_statistic < 1.36 / math.sqrt(20000) and fit.p_value > 0.05
    assert fit.gaussian_kl_to_sampling_distribution < 1e-3
    assert fit.gaussian_kl_to_prior == pytest.approx(1.5 * (v - 1 - math.log(v)), abs=2e-3)  # KL(N(0,vI)‖N(0,I))
    # the same codes 0.7 times too narrow: far from the sampler
    narrow = avae.latent_fit(0.7 * z, h)
    assert narrow.ks_statistic > 0.25 and narrow.p_value < 1e-12
    assert narrow.gaussian_kl_to_sampling_distribution == pytest.approx(1.5 * (0.49 - 1 - math.log(0.49)), abs=5e-3)


def test_latent_fit_gives_evaluates_figures_for_h_or_a_variance():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((300, 4)) * 0.8 + 0.1
    fit = avae.latent_fit(z, 0.6)
    assert fit == avae.latent_fit(z, variance=0.64)  # N(0, (1 − 0.6²)I) = N(0, 0.64 I)
    assert fit.ks_statistic == latent.norm_chi2_test(z, 0.64)["ks_statistic"]
    assert fit.p_value == latent.norm_chi2_test(z, 0.64)["p_value"]
    assert fit.gaussian_kl_to_sampling_distribution == latent.gaussian_kl(z, 0.64)
    assert fit.gaussian_kl_to_prior == latent.gaussian_kl(z, 1.0)
    # a tensor that needs gradients, in float32: scored in float64, detached
    t = torch.tensor(z, dtype=torch.float32, requires_grad=True)
    assert avae.latent_fit(t, 0.6).ks_statistic == pytest.approx(fit.ks_statistic, abs=1e-5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.ks_statistic = 0.0
    assert avae.latent_fit is latent.latent_fit and avae.LatentFit is latent.LatentFit


@pytest.mark.parametrize("codes, kwargs, message", [
    (np.ones((10, 2)), {}, "exactly one of them"),
    (np.ones((10, 2)), {"h": 0.3, "variance": 0.9}, "exactly one of them"),
    (np.ones((10, 2)), {"h": 1.0}, r"h must be a number ≥ 0 and < 1, got 1\.0"),
    (np.ones((10, 2)), {"h": -0.1}, "h must be a number ≥ 0 and < 1"),
    (np.ones((10, 2)), {"h": "0.3"}, "h must be a number"),
    (np.ones((10, 2)), {"h": True}, "h must be a number"),
    (np.ones((10, 2)), {"variance": 0}, r"variance must be a number > 0, got 0"),
    (np.ones((10, 2)), {"variance": math.inf}, "variance must be a number > 0"),
    (np.ones(10), {"h": 0.3}, r"codes must be an \(n ≥ 2, d\) array, got shape \(10,\)"),
    ("codes", {"h": 0.3}, "codes must be an"),
    (np.random.default_rng(0).standard_normal((2, 2)), {"h": 0.3}, "covariance is singular"),
    (np.stack([np.arange(10.0), np.zeros(10)], 1), {"h": 0.3}, "covariance is singular"),
    (np.array([[0.0, 1.0], [np.nan, 0.0], [1.0, 1.0]]), {"h": 0.3}, "non-finite"),
])
def test_latent_fit_refuses_bad_arguments_in_one_line(codes, kwargs, message):
    with pytest.raises(avae.AvaeError, match=message) as error:
        avae.latent_fit(codes, **kwargs)
    assert "\n" not in str(error.value)
