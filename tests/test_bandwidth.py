"""h_opt against the paper's values; the correction; determinism; the cache; the CLI."""
import json
import math

import pytest

from avae import bandwidth as bw
from avae.cli import main
from avae.errors import AvaeError


@pytest.mark.parametrize("l,m,paper", [(16, 10000, 0.72), (64, 20000, 1.02), (128, 10000, 1.12), (10, 500, 0.74)])
def test_h_opt_agrees_with_the_paper(l, m, paper):
    assert bw.bandwidth(l, m, cache=False).h_opt == pytest.approx(paper, abs=0.02)


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


def test_unreadable_cache_is_recomputed():
    bw.cache_path().parent.mkdir(parents=True, exist_ok=True)
    bw.cache_path().write_text("{not json")
    assert bw.bandwidth(5, 300).h_opt > 0
    assert json.loads(bw.cache_path().read_text())


def test_cli_prints_all_three_numbers(capsys):
    assert main(["bandwidth", "-l", "16", "-m", "10000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["h_opt"] == pytest.approx(0.72, abs=0.02)
    assert out["h"] == pytest.approx(bw.corrected(out["h_opt"])[0])
    assert out["sampling_std"] == pytest.approx(math.sqrt(1 - out["h"] ** 2))
    assert main(["bandwidth", "-l", "16", "-m", "10000"]) == 0
    assert "h_opt=" in capsys.readouterr().out


@pytest.mark.parametrize("l,m", [(0, 100), (-3, 100), (4, 1)])
def test_bad_sizes_are_user_errors(l, m, capsys):
    with pytest.raises(AvaeError):
        bw.bandwidth(l, m)
    assert main(["bandwidth", "-l", str(l), "-m", str(m)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "avae: error:" in err
