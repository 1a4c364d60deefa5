"""h_opt against the paper's values and an independent quadrature; the correction; determinism;
finiteness at the edges; the cache; the CLI."""
import json
import math

import numpy as np
import pytest
from scipy.stats import chi2

from avae import kde_bandwidth as bw
from avae.cli import main
from avae.errors import AvaeError
from avae.objective import log_density_floor


def quadrature_h_opt(m, draws=8, seed=0):
    """l = 1: argmax over a fine grid of h of E_centres ∫ N(z; 0, 1) log q_h(z) dz, the integral by
    the trapezoid rule on [−7, 7] — no sampled targets, unlike the estimator."""
    z = np.linspace(-7, 7, 701)
    weight = np.exp(-z**2 / 2) / math.sqrt(2 * math.pi) * (z[1] - z[0])
    hs = np.exp(np.linspace(math.log(0.05), math.log(1.5), 60))
    rng = np.random.default_rng(seed)
    total = np.zeros(len(hs))
    for _ in range(draws):
        d2 = (z[:, None] - rng.standard_normal(m)[None, :]) ** 2
        for k, h in enumerate(hs):
            a = -d2 / (2 * h * h)
            log_q = a.max(1) + np.log(np.exp(a - a.max(1, keepdims=True)).mean(1)) - math.log(h)
            total[k] += weight @ log_q
    return hs[np.argmax(total)]


@pytest.mark.parametrize("l,m,paper", [(16, 10000, 0.72), (64, 20000, 1.02), (128, 10000, 1.12), (10, 500, 0.74)])
def test_h_opt_agrees_with_the_paper(l, m, paper):
    assert bw.bandwidth(l, m, cache=False).h_opt == pytest.approx(paper, abs=0.02)


@pytest.mark.parametrize("m", [100, 300])
def test_h_opt_at_l1_maximises_the_expected_log_density(m):
    estimates = [bw.bandwidth(1, m, seed=s, cache=False).h_opt for s in range(3)]
    assert max(estimates) / min(estimates) < 1.25  # stable over seeds
    assert np.mean(estimates) == pytest.approx(quadrature_h_opt(m), rel=0.15)


def test_the_maximiser_is_not_a_minimum_or_a_bound():
    objective = bw.Objective(2, 500, seed=0, n_targets=256, draws=2)
    h = bw.estimate_h_opt(2, 500, seed=0, n_targets=256, draws=2)
    near = np.log(h) + np.array([-0.2, 0.0, 0.2])
    values = objective(near)
    assert values[1] > values[0] and values[1] > values[2]
    assert bw.H_BOUNDS[0] < h < bw.H_BOUNDS[1]


@pytest.mark.parametrize("l,m", [(1, 2), (2, 3), (1, 20000), (3, 2), (64, 2), (1024, 50)])
def test_finite_bandwidth_and_density_floor_at_the_edges(l, m):
    b = bw.bandwidth(l, m, cache=False)
    assert all(math.isfinite(x) and x > 0 for x in (b.h_opt, b.h, b.sampling_std))
    assert math.isfinite(log_density_floor(b.h, l, 1 - 1e-6))


def test_density_floor_is_finite_where_the_rounded_h2_is_zero():
    assert math.isfinite(log_density_floor(0.042, 1, 1 - 1e-6))  # round(0.042², 2) = 0
    v = round(0.52**2, 2)  # the authors' rounding is kept where it is defined
    expected = -chi2.ppf(1 - 1e-6, df=16, scale=v) / (2 * v) - 16 * math.log(0.52)
    assert log_density_floor(0.52, 16, 1 - 1e-6) == pytest.approx(expected)


def test_correction_and_sampling_std():
    h, std = bw.corrected(0.72)
    assert h == pytest.approx(0.5843, abs=1e-4)  # the paper's MNIST kernel
    assert std == pytest.approx(math.sqrt(1 - h * h)) == pytest.approx(1 / math.sqrt(1 + 0.72**2))
    assert bw.corrected(1.12)[0] == pytest.approx(0.7459, abs=1e-4)  # CIFAR10
    assert all(bw.corrected(x)[0] < 1 for x in (0.1, 1.0, 5.0, 50.0))


def test_deterministic_for_a_seed_and_varies_with_it():
    a, b = bw.estimate_h_opt(8, 2000, seed=3), bw.estimate_h_opt(8, 2000, seed=3)
    assert a == b
    assert bw.estimate_h_opt(8, 2000, seed=4) != a


def test_bandwidth_grows_with_l_and_shrinks_with_m():
    assert bw.bandwidth(10, 1000, cache=False).h_opt > bw.bandwidth(10, 5000, cache=False).h_opt
    assert bw.bandwidth(20, 1000, cache=False).h_opt > bw.bandwidth(10, 1000, cache=False).h_opt


def test_cache_is_written_and_reused(monkeypatch):
    first = bw.bandwidth(12, 800)
    assert bw.cache_path().is_file()

    def no_recompute(*args, **kwargs):
        raise AssertionError("the cached value should have been used")

    monkeypatch.setattr(bw, "estimate_h_opt", no_recompute)
    assert bw.bandwidth(12, 800) == first


def test_unreadable_cache_is_recomputed(monkeypatch):
    bw.cache_path().parent.mkdir(parents=True, exist_ok=True)
    bw.cache_path().write_text("{not json")
    value = bw.bandwidth(5, 300)
    assert value.h_opt > 0
    assert isinstance(json.loads(bw.cache_path().read_text()), dict)  # rewritten as JSON
    # ... that holds the recomputed value: the next call reads it instead of estimating again
    monkeypatch.setattr(bw, "estimate_h_opt", lambda *a, **k: pytest.fail("estimated again: the cache was not rewritten"))
    assert bw.bandwidth(5, 300) == value


def test_cli_prints_all_three_numbers(capsys):
    assert main(["bandwidth", "-l", "16", "-m", "10000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["h_opt"] == pytest.approx(0.72, abs=0.02)
    assert out["h"] == pytest.approx(bw.corrected(out["h_opt"])[0])
    assert out["sampling_std"] == pytest.approx(math.sqrt(1 - out["h"] ** 2))
    assert main(["bandwidth", "-l", "16", "-m", "10000"]) == 0
    assert "h_opt=" in capsys.readouterr().out


@pytest.mark.parametrize("l,m", [(0, 100), (-3, 100), (4, 1), (4, 0), (1, -5)])
def test_bad_sizes_are_user_errors(l, m, capsys):
    with pytest.raises(AvaeError):
        bw.bandwidth(l, m)
    assert main(["bandwidth", "-l", str(l), "-m", str(m)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "avae: error:" in err
