"""Samplers fitted to a trained run's codes: known answers for each, their files, and the commands."""
import math
import shutil
import sys

import numpy as np
import pytest
import torch
from scipy import stats

import avae
from avae import run, samplers
from avae.cli import SAMPLERS_HELP, main
from avae.errors import AvaeError
from avae.data import load_data


def fails(capsys, *argv, says):
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("avae: error:") and err.count("\n") == 1 and "Traceback" not in err, err
    assert says in err, err
    return err


def make(name, latent_dim, **settings):
    return samplers.sampler_class(name)(latent_dim, settings)


def gaussian_draws(n, mean, cov, seed):
    return torch.as_tensor(np.random.default_rng(seed).multivariate_normal(mean, cov, n))


def ring(n, seed):
    """Points near a circle of radius 2: what no Gaussian fits."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
    return 2 * torch.stack([torch.cos(theta), torch.sin(theta)], 1) + 0.2 * torch.randn(n, 2, generator=g,
                                                                                        dtype=torch.float64)


# --- known answers ------------------------------------------------------------------------------
MEAN, COV = np.array([1.0, -2.0, 0.5]), np.array([[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.5]])


def test_gaussian_recovers_the_mean_and_covariance_and_its_density():
    sampler = make("gaussian", 3)
    report = sampler.fit(gaussian_draws(20000, MEAN, COV, 0), gaussian_draws(2000, MEAN, COV, 1), seed=0)
    torch.testing.assert_close(sampler.mean, torch.as_tensor(MEAN), atol=0.04, rtol=0)
    torch.testing.assert_close(sampler.scale_tril @ sampler.scale_tril.T, torch.as_tensor(COV), atol=0.06, rtol=0)
    z = gaussian_draws(5, MEAN, COV, 2)
    expected = stats.multivariate_normal(sampler.mean.numpy(), (sampler.scale_tril @ sampler.scale_tril.T).numpy())
    np.testing.assert_allclose(sampler.log_prob(z).numpy(), expected.logpdf(z.numpy()), rtol=1e-10)
    # held-out log-likelihood per dimension: the true Gaussian's expected value −½(log det(2πeΣ))/l
    truth = -0.5 * (3 * math.log(2 * math.pi * math.e) + math.log(np.linalg.det(COV))) / 3
    assert report.log_likelihood_per_dim == pytest.approx(truth, abs=0.03)
    assert report.frechet_distance < 0.05 and report.sliced_ks < 0.05
    drawn = sampler.sample(20000, torch.Generator().manual_seed(0)).double()
    torch.testing.assert_close(drawn.mean(0), torch.as_tensor(MEAN), atol=0.04, rtol=0)


CENTRES, WEIGHTS = np.array([[-4.0, 0.0], [4.0, 0.0], [0.0, 5.0]]), np.array([0.5, 0.3, 0.2])


def mixture(n, seed):
    rng = np.random.default_rng(seed)
    which = rng.choice(3, n, p=WEIGHTS)
    return torch.as_tensor(CENTRES[which] + rng.normal(scale=[[0.5, 1.0]], size=(n, 2)))


def test_gmm_recovers_three_clusters_and_beats_one_gaussian_on_held_out_codes():
    train, heldout = mixture(3000, 0), mixture(1000, 1)
    gmm, gaussian = make("gmm", 2, k=3), make("gaussian", 2)
    report, one = gmm.fit(train, heldout, seed=0), gaussian.fit(train, heldout, seed=0)
    nearest = [int(torch.cdist(torch.as_tensor(c)[None], gmm.means).argmin()) for c in CENTRES]
    assert sorted(nearest) == [0, 1, 2]
    torch.testing.assert_close(gmm.means[nearest], torch.as_tensor(CENTRES), atol=0.15, rtol=0)
    torch.testing.assert_close(gmm.weights[nearest], torch.as_tensor(WEIGHTS), atol=0.03, rtol=0)
    cov = gmm.scale_trils[nearest[0]] @ gmm.scale_trils[nearest[0]].T
    torch.testing.assert_close(cov, torch.diag(torch.tensor([0.25, 1.0], dtype=torch.float64)), atol=0.1, rtol=0)
    assert report.log_likelihood_per_dim > one.log_likelihood_per_dim + 0.3
    assert report.sliced_ks < one.sliced_ks
    # the density in log space is the mixture's: log Σ_k w_k N(z; μ_k, Σ_k)
    z = heldout[:7]
    direct = sum(float(w) * stats.multivariate_normal(m.numpy(), (s @ s.T).numpy()).pdf(z.numpy())
                 for w, m, s in zip(gmm.weights, gmm.means, gmm.scale_trils))
    np.testing.assert_allclose(gmm.log_prob(z).numpy(), np.log(direct), rtol=1e-9)
    again = make("gmm", 2, k=3)
    again.fit(train, heldout, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), gmm.state_dict().values()))


RING_TRAIN, RING_HELDOUT = 1200, 1000
SMALL = {"flow": {"transforms": 2, "hidden": 32, "lr": 5e-3, "batch_size": 100, "max_epochs": 15},
         "latent_diffusion": {"timesteps": 50, "hidden": 64, "lr": 2e-3, "batch_size": 64, "max_epochs": 300}}


@pytest.fixture(scope="module")
def ring_fits():
    """The gaussian and (where their packages are installed) flow and latent_diffusion fitted to a ring."""
    train, heldout = ring(RING_TRAIN, 0), ring(RING_HELDOUT, 1)
    fits = {}
    for name in ("gaussian", "flow", "latent_diffusion"):
        try:
            sampler = make(name, 2, **SMALL.get(name, {}))
        except AvaeError:  # its optional package is missing
            continue
        fits[name] = (sampler, sampler.fit(train, heldout, seed=0))
    return fits


@pytest.mark.parametrize("name", ["flow", "latent_diffusion"])
def test_neural_samplers_fit_a_ring_better_than_a_gaussian(ring_fits, name):
    pytest.importorskip({"flow": "zuko", "latent_diffusion": "diffusers"}[name])
    sampler, report = ring_fits[name]
    _, gaussian = ring_fits["gaussian"]
    assert report.sliced_ks < 0.75 * gaussian.sliced_ks, (report, gaussian)
    assert report.details["codes_fit"] + report.details["codes_early_stopping"] == RING_TRAIN
    if name == "flow":
        assert report.log_likelihood_per_dim > gaussian.log_likelihood_per_dim + 0.2
    else:
        assert report.log_likelihood_per_dim is None  # samples only, no density
        with pytest.raises(AvaeError, match="no density"):
            sampler.log_prob(ring(3, 2))
    radius = sampler.sample(2000, torch.Generator().manual_seed(4)).double().norm(dim=1)
    assert abs(float(radius.median()) - 2.0) < 0.15


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_latent_diffusion_noises_a_code_to_pure_noise_at_any_number_of_timesteps(schedule):
    pytest.importorskip("diffusers")
    for timesteps in (2, 10, 50, 200, 1000):
        scheduler = make("latent_diffusion", 2, timesteps=timesteps, schedule=schedule).scheduler()
        # sampling starts from N(0, I), so the last noised code must keep (almost) nothing of the code
        assert float(scheduler.alphas_cumprod[-1]) < 1e-3, timesteps
        assert 0 < float(scheduler.betas.min()) and float(scheduler.betas.max()) < 1, timesteps


def test_state_round_trip_gives_identical_samples(ring_fits):
    gmm = make("gmm", 2, k=4)
    gmm.fit(ring(500, 0), ring(100, 1), seed=3)
    fitted = {"gmm": gmm, **{name: sampler for name, (sampler, _) in ring_fits.items()}}
    for name, sampler in fitted.items():
        copy = make(name, 2, **{**SMALL.get(name, {}), **({"k": 4} if name == "gmm" else {})})
        copy.load_state_dict({k: v.clone() for k, v in sampler.state_dict().items()})
        a = sampler.sample(50, torch.Generator().manual_seed(7))
        assert torch.equal(a, copy.sample(50, torch.Generator().manual_seed(7))), name
        assert not torch.equal(a, sampler.sample(50, torch.Generator().manual_seed(8))), name


def test_sliced_ks_knows_equal_and_shifted_sets():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4000, 2)), rng.normal(size=(4000, 2))
    assert samplers.sliced_ks(a, b, np.random.default_rng(1)) < 0.04
    assert samplers.sliced_ks(a, b + 10, np.random.default_rng(1)) > 0.9


def test_bad_settings_are_one_line_errors():
    with pytest.raises(AvaeError, match="has no setting q; its settings are: k, max_iter"):
        make("gmm", 2, q=1)
    with pytest.raises(AvaeError, match="gmm.k must be an integer ≥ 1"):
        make("gmm", 2, k=0)
    with pytest.raises(AvaeError, match="unknown sampler 'nope'; choose one of: prior, gaussian, gmm"):
        samplers.sampler_class("nope")
    with pytest.raises(AvaeError, match="needs at least 10 training codes with its settings, got 5"):
        make("gmm", 2, k=10).fit(ring(5, 0), ring(5, 1))
    with pytest.raises(AvaeError, match=r"training codes must be an \(n ≥ 2, 3\) array, got shape \(5, 2\)"):
        make("gaussian", 3).fit(ring(5, 0), ring(5, 1))
    with pytest.raises(AvaeError, match="sampler gmm is named twice"):
        samplers.parse_names("prior, gmm,gmm")
    assert samplers.parse_names("prior,gmm,flow") == ["prior", "gmm", "flow"]


def test_the_command_line_names_every_sampler():
    assert all(name in SAMPLERS_HELP for name in samplers.SAMPLERS)
    assert samplers.exportable() == ["prior", "gaussian", "gmm"]


# --- a trained run -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(mnist_root, tmp_path_factory):
    """A VAE (so its codes are posterior means) trained one epoch on 500 small images, with a gmm fitted."""
    cfg = {"data": {"name": "mnist", "root": str(mnist_root)},
           "model": {"name": "vae", "latent_dim": 3, "width": 0.125},
           "train": {"batch_size": 50, "epochs": 1, "progress": False, "figures_every": 0}}
    out = avae.train(cfg, out=tmp_path_factory.mktemp("runs") / "r")
    assert main(["fit-sampler", str(out), "--sampler", "gmm", "--set", "k=2", "--codes", "300", "--seed", "1"]) == 0
    return out


def test_fit_sampler_prints_its_report_and_saves_a_weights_only_file(run_dir, capsys):
    assert main(["fit-sampler", str(run_dir), "--sampler", "gaussian", "--codes", "200", "--heldout", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "gaussian fitted in" in out and "to the posterior means of 160 training images (last checkpoint)" in out
    assert "on 40 held-out codes: log-likelihood" in out and "Fréchet distance" in out and "sliced KS" in out
    path = run_dir / "samplers" / "gaussian-last.pt"
    assert f"saved: {path}" in out
    record = torch.load(path, weights_only=True)
    assert record["checkpoint_sha256"] == run.checkpoint_sha256(run_dir, "last")
    assert record["codes"] == {"size": 200, "heldout": 0.2, "seed": 0, "what": "posterior means", "split": "train",
                               "train": 160, "held_out": 40}
    assert set(record["state"]) == {"mean", "scale_tril"} and record["settings"] == {}
    assert record["report"]["sampler"] == "gaussian" and record["report"]["codes_heldout"] == 40
    gmm = torch.load(run_dir / "samplers" / "gmm-last.pt", weights_only=True)
    assert gmm["settings"]["k"] == 2 and gmm["state"]["means"].shape == (2, 3)


def test_the_codes_are_a_fixed_seeded_subset_encoded_as_posterior_means(run_dir):
    model = avae.load(run_dir)
    cfg, spec = run.read(run_dir)
    train = load_data(cfg).train
    train_idx, heldout_idx = samplers.codes.pick(len(train), 300, 0.1, seed=1)
    assert len(train_idx) == 270 and len(heldout_idx) == 30 and not set(train_idx) & set(heldout_idx)
    again = samplers.codes.pick(len(train), 300, 0.1, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(again, (train_idx, heldout_idx)))
    codes = samplers.codes.of_images(model, train, spec.value_range, size=300, heldout=0.1, seed=1)
    x = train.images(train_idx[:4]).float() / 255
    torch.testing.assert_close(codes.train[:4], model.posterior(x)[0].double())  # the means, not draws
    assert codes.what == "posterior means"


def test_prior_is_the_models_own_sampler_bitwise(run_dir, capsys, tmp_path):
    model = avae.load(run_dir)
    a = model.sample(9, torch.Generator().manual_seed(2))
    assert torch.equal(a, model.sample(9, torch.Generator().manual_seed(2), sampler="prior"))
    prior = samplers.load_for_run(run_dir, "prior", model)
    assert torch.equal(prior.sample(9, torch.Generator().manual_seed(2)),
                       model.sample_latent(9, torch.Generator().manual_seed(2)))
    assert main(["sample", str(run_dir), "-n", "12", "--out", str(tmp_path / "a")]) == 0
    assert main(["sample", str(run_dir), "-n", "12", "--sampler", "prior", "--out", str(tmp_path / "b")]) == 0
    assert np.array_equal(np.load(tmp_path / "a" / "samples.npy"), np.load(tmp_path / "b" / "samples.npy"))
    # what `avae evaluate --samplers` draws: prior's codes are those of the model's own sampling
    drawn = samplers.sample_codes(run_dir, "prior,gmm", model, 20, seed=5)
    assert np.array_equal(drawn["prior"], model.sample_latent(20, torch.Generator().manual_seed(5)).double().numpy())
    assert drawn["gmm"].shape == (20, 3)


def test_a_fitted_sampler_draws_through_load_sample_and_the_command(run_dir, capsys, tmp_path):
    model = avae.load(run_dir)
    gmm = samplers.load_for_run(run_dir, "gmm", model)
    assert gmm.report.codes_train == 270 and gmm.report.details["codes"] == "posterior means"
    images = model.sample(6, torch.Generator().manual_seed(3), sampler="gmm")
    torch.testing.assert_close(images, model.decode(gmm.sample(6, torch.Generator().manual_seed(3))))
    assert torch.equal(images, model.sample(6, torch.Generator().manual_seed(3), sampler=gmm))
    assert not torch.equal(images, model.sample(6, torch.Generator().manual_seed(3)))
    assert main(["sample", str(run_dir), "-n", "6", "--seed", "3", "--sampler", "gmm", "--out", str(tmp_path / "s")]) == 0
    assert "6 samples (codes drawn by gmm: a Gaussian mixture" in capsys.readouterr().out
    from avae.report import to_uint8

    assert np.array_equal(np.load(tmp_path / "s" / "samples.npy"), to_uint8(images, model.spec.value_range))


def test_export_writes_the_gmm_as_tensors_and_refuses_the_neural_samplers(run_dir, capsys, tmp_path):
    assert main(["export", str(run_dir), "--sampler", "gmm", "--out", str(tmp_path / "exp")]) == 0
    assert "sampler.pt (weights, means and scale_trils of the gmm's components)" in capsys.readouterr().out
    tensors = torch.load(tmp_path / "exp" / "sampler.pt", weights_only=True)
    g = torch.Generator().manual_seed(9)  # the recipe in avae.exporter's docstring, with torch alone
    c = torch.multinomial(tensors["weights"], 5, replacement=True, generator=g)
    eps = torch.randn(5, 3, generator=g, dtype=tensors["means"].dtype)
    codes = (tensors["means"][c] + (tensors["scale_trils"][c] @ eps.unsqueeze(-1)).squeeze(-1)).float()
    gmm = samplers.load_for_run(run_dir, "gmm", avae.load(run_dir))
    assert torch.equal(codes, gmm.sample(5, torch.Generator().manual_seed(9)))
    for name in ("flow", "latent_diffusion"):
        fails(capsys, "export", run_dir, "--sampler", name, "--out", tmp_path / name,
              says="only for the samplers that are plain tensors (prior, gaussian, gmm)")
        assert not (tmp_path / name).exists()


def test_neural_samplers_fit_save_and_load_for_a_run(run_dir, capsys):
    pytest.importorskip("zuko")
    pytest.importorskip("diffusers")
    model = avae.load(run_dir)
    for name, settings in (("flow", {"max_epochs": 2, "hidden": 8}), ("latent_diffusion", {"max_epochs": 2, "timesteps": 10})):
        fitted = samplers.fit_sampler(run_dir, name, settings, codes=100, seed=2)
        loaded = samplers.load_for_run(run_dir, name, model)
        assert torch.equal(fitted.sampler.sample(4, torch.Generator().manual_seed(1)),
                           loaded.sample(4, torch.Generator().manual_seed(1)))
        assert loaded.settings == fitted.sampler.settings and loaded.report == fitted.report


def test_a_sampler_fitted_for_another_checkpoint_is_refused(run_dir, capsys, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    path = run.checkpoint_path(other, "last")
    state = torch.load(path, weights_only=True)
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name] = state["model"][name] + 0.01  # other weights, e.g. after training on
    torch.save(state, path)
    fails(capsys, "sample", other, "--sampler", "gmm", "--out", tmp_path / "s",
          says="gmm-last.pt was fitted for another checkpoint")
    err = fails(capsys, "export", other, "--sampler", "gmm", "--out", tmp_path / "e", says="another checkpoint")
    assert f"fit it again with `avae fit-sampler {other} --sampler gmm`" in err
    with pytest.raises(AvaeError, match="fitted for another checkpoint"):
        avae.load(other).sample(2, sampler="gmm")
    model = run.open_model(run.read_record(other), False)  # a model that avae.load did not open knows no run
    with pytest.raises(AvaeError, match="not opened with avae.load"):
        model.sample(2, sampler="gmm")
    fails(capsys, "sample", run_dir, "--sampler", "gmm", "--checkpoint", "best", "--out", tmp_path / "b",
          says="has no gmm sampler for its best checkpoint; fit one with `avae fit-sampler")


def test_a_sampler_fitted_by_an_earlier_version_of_it_is_refused(run_dir, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(samplers.sampler_class("gmm"), "version", 2)  # as if gmm had changed since the fit
    err = fails(capsys, "sample", run_dir, "--sampler", "gmm", "--out", tmp_path / "s",
                says="gmm-last.pt was fitted by version 1 of the gmm sampler, which draws differently")
    assert f"fit it again with `avae fit-sampler {run_dir} --sampler gmm`" in err


def test_missing_files_settings_and_packages_are_one_line_errors(run_dir, capsys, monkeypatch, tmp_path):
    fails(capsys, "fit-sampler", run_dir, "--sampler", "nope", says="unknown sampler 'nope'")
    fails(capsys, "fit-sampler", run_dir, "--sampler", "gmm", "--set", "q=1", says="has no setting q")
    fails(capsys, "fit-sampler", run_dir, "--sampler", "gmm", "--set", "k", says="must look like key=value")
    fails(capsys, "fit-sampler", run_dir, "--sampler", "gmm", "--codes", "300", "--heldout", "0.001",
          says="each needs at least 2")
    fails(capsys, "fit-sampler", tmp_path, "--sampler", "gmm", says="not a run directory")
    fails(capsys, "sample", run_dir, "--sampler", "nope", "--out", tmp_path / "s", says="unknown sampler 'nope'")
    (run_dir / "samplers" / "gaussian-best.pt").write_bytes(b"garbage")
    fails(capsys, "sample", run_dir, "--sampler", "gaussian", "--checkpoint", "best", "--out", tmp_path / "s",
          says="gaussian-best.pt cannot be read (UnpicklingError): it is corrupt; fit it again with")
    monkeypatch.setitem(sys.modules, "zuko", None)  # as if zuko were not installed
    err = fails(capsys, "fit-sampler", run_dir, "--sampler", "flow", says="pip install 'avae[flow]'")
    assert "needs zuko" in err


def test_evaluate_scores_the_samples_of_each_sampler_side_by_side(run_dir, capsys, tmp_path):
    import json

    from avae.comparison import compare, text_table

    ev = dict(n=60, seed=1, features="random", progress=False)
    fails(capsys, "evaluate", run_dir, "-n", 60, "--checkpoint", "best", "--samplers", "prior,gmm",
          says="gmm")  # fitted for the last checkpoint only: refused
    assert not (run_dir / "evaluate.json").exists() and not (run_dir / "evaluation").exists()  # nothing written
    plain = avae.evaluate(run_dir, **ev)
    assert "samplers" not in plain  # the default: today's results, unchanged
    result = avae.evaluate(run_dir, samplers="prior,gmm", **ev)
    assert {k: v for k, v in result.items() if k not in ("samplers", "timings_s")} == \
        {k: v for k, v in plain.items() if k != "timings_s"}  # asking for more changes none of the rest
    prior, gmm = result["samplers"]["prior"], result["samplers"]["gmm"]
    assert prior["sample_quality"] == result["sample_quality"]["N"]  # prior's N set is the model's own
    assert gmm["sample_quality"]["frechet_distance"] != prior["sample_quality"]["frechet_distance"]
    fitted = samplers.load_for_run(run_dir, "gmm", avae.load(run_dir))
    assert gmm["fit"] == fitted.report.as_dict() and gmm["description"] == fitted.description
    for fit in (prior["latent_fit"], gmm["latent_fit"]):
        assert 0 <= fit["sliced_ks"] <= 1 and math.isfinite(fit["log_likelihood_per_dim"])
    assert json.loads((run_dir / "evaluate.json").read_text()) == result
    assert "Samples by sampler" in (run_dir / "evaluate.html").read_text()

    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    table = text_table(compare([run_dir, other]))
    assert "Fréchet distance, N, gmm sampler ↓" in table and "sliced KS distance of samples to the held-out codes, " \
        "gmm sampler ↓" in table
