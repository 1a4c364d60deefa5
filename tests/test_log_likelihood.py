"""The importance-sampled log-likelihood (avae.metrics.marginal_likelihood): a linear-Gaussian model
whose log p(x) is known in closed form, the bound's behaviour in K on a trained VAE, seeding, and
what `avae evaluate` writes for models with and without one."""
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from avae import config, run, trainer
from avae.cli import main
from avae.errors import AvaeError
from avae.evaluation import evaluate
from avae.likelihood import Likelihood
from avae.metrics import marginal_likelihood as ml
from avae.metrics.catalogue import headlines
from avae.models import DataSpec, build_model
from avae.models.vae import VAE
from avae.user_nets import UserNetworks
from avae.data import load_data
from fixtures import blobs, write_mnist

SHAPE = (1, 2, 2)  # D = 4 pixels
W = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # orthogonal columns
B = torch.tensor([0.3, 0.5, 0.4, 0.6], dtype=torch.float64)


class LinearEncoder(nn.Module):
    def __init__(self, shape, out_dim):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(shape)), out_dim))

    def forward(self, x):
        return self.net(x)


class LinearDecoder(nn.Module):
    def __init__(self, shape, latent_dim):
        super().__init__()
        self.net, self.shape = nn.Linear(latent_dim, int(np.prod(shape))), tuple(shape)

    def forward(self, z):
        return self.net(z).reshape(-1, *self.shape)


class UnboundedGaussian(Likelihood):
    """The Gaussian likelihood with the decoder's raw output as its mean (no squashing): a linear decoder
    then makes p(x) = N(b, WWᵀ + σ²I) exactly."""

    def mean(self, raw):
        return raw


def linear_gaussian_vae() -> VAE:
    """z ~ N(0, I), x | z ~ N(Wz + b, ½I), and an encoder that outputs the exact posterior
    N(Σ Wᵀ(x − b)/σ², Σ), Σ = (I + WᵀW/σ²)⁻¹ (diagonal, as WᵀW is)."""
    nets = UserNetworks({"class": f"{__name__}:LinearEncoder"}, {"class": f"{__name__}:LinearDecoder"})
    model = VAE(DataSpec(SHAPE, "gaussian", (0.0, 1.0), 100), 2, nets, 1.0, VAE.Params())
    model.likelihood = UnboundedGaussian("gaussian")
    s2 = ml.GAUSSIAN_VARIANCE
    cov = torch.linalg.inv(torch.eye(2, dtype=torch.float64) + W.T @ W / s2)
    gain = cov @ W.T / s2  # μ = gain·(x − b)
    with torch.no_grad():
        enc = model.encoder.net[1]
        enc.weight.copy_(torch.cat([gain, torch.zeros(2, 4, dtype=torch.float64)]))
        enc.bias.copy_(torch.cat([-gain @ B, torch.log(torch.diagonal(cov))]))
        model.decoder.net.weight.copy_(W)
        model.decoder.net.bias.copy_(B)
    return model.eval()


def exact_log_px(images_uint8: np.ndarray) -> np.ndarray:
    x = torch.as_tensor(images_uint8.reshape(len(images_uint8), -1), dtype=torch.float64) / 255
    cov = W @ W.T + ml.GAUSSIAN_VARIANCE * torch.eye(4, dtype=torch.float64)
    return torch.distributions.MultivariateNormal(B, cov).log_prob(x).numpy()


def test_the_exact_posterior_gives_the_exact_log_likelihood_for_any_k():
    model = linear_gaussian_vae()
    images = np.random.default_rng(0).integers(0, 256, (25, *SHAPE), dtype=np.uint8)
    truth = exact_log_px(images)
    for samples in (1, 7, 64):
        log_px, elbo = ml.log_likelihoods(model, images, samples, seed=3)
        # every importance weight equals p(x): the bound is tight, up to float32 networks
        np.testing.assert_allclose(log_px, truth, atol=2e-4, rtol=0)
        np.testing.assert_allclose(elbo, truth, atol=2e-4, rtol=0)
    result = ml.estimate(model, images, 7, seed=3)
    assert result["nll_nats"] == pytest.approx(-truth.mean(), abs=2e-4)
    assert result["n"] == 25 and result["dims"] == 4 and result["samples"] == 7


def test_a_wrong_posterior_lowers_the_bound_and_more_samples_close_the_gap():
    model = linear_gaussian_vae()
    with torch.no_grad():
        model.encoder.net[1].bias[2:] += 1.5  # a posterior e^{1.5} times too wide
    images = np.random.default_rng(1).integers(0, 256, (2000, *SHAPE), dtype=np.uint8)
    truth = exact_log_px(images).mean()
    bounds = [ml.log_likelihoods(model, images, k, seed=0)[0].mean() for k in (1, 10, 100)]
    assert bounds[0] < bounds[1] < bounds[2] < truth
    assert truth - bounds[2] < 0.1 * (truth - bounds[0])  # K = 100 has closed most of the ELBO's gap


def test_log_prob_is_the_normalised_reconstruction_cost():
    rng = torch.Generator().manual_seed(0)
    raw, x = torch.randn(5, 1, 3, 3, generator=rng), torch.rand(5, 1, 3, 3, generator=rng)
    gauss = Likelihood("gaussian")
    constant = 0.5 * 9 * math.log(2 * math.pi * ml.GAUSSIAN_VARIANCE)  # SSE/(2σ²) = SSE for σ² = ½
    torch.testing.assert_close(ml.log_prob(gauss, raw, x), -gauss.per_image(raw, x).double() - constant)
    binary = (x > 0.5).float()
    bern = Likelihood("bernoulli")
    torch.testing.assert_close(ml.log_prob(bern, raw, binary), -bern.per_image(raw, binary).double())
    # a proper density: N(x; m, ½) integrates to 1 over x (numerically, on a fine grid around m)
    grid = torch.linspace(-6, 6, 200001, dtype=torch.float64).reshape(-1, 1, 1, 1)
    mean_raw = torch.zeros(1, 1, 1, 1, dtype=torch.float64)  # sigmoid(0) = 0.5
    density = ml.log_prob(gauss, mean_raw.expand_as(grid), grid).exp()
    assert float(torch.trapezoid(density, grid.flatten())) == pytest.approx(1.0, abs=1e-9)


def test_bits_per_dim_is_nats_over_d_ln_2():
    d = 1024
    log_px = np.array([-d * math.log(2) * 1.5, -d * math.log(2) * 2.5])
    result = ml.summary(log_px, log_px - 1.0, d, 10, "gaussian")
    assert result["nll_nats"] == pytest.approx(2.0 * d * math.log(2))
    assert result["bits_per_dim"] == pytest.approx(2.0)
    assert ml.nats_to_bits_per_dim(result["nll_nats"], d) == result["bits_per_dim"]
    assert result["neg_elbo_nats"] == pytest.approx(result["nll_nats"] + 1.0)
    assert result["nll_nats_sem"] == pytest.approx(d * math.log(2) / 2)  # std (d ln 2)/√2 over √2 images
    assert "dequantisation" in result["note"] and "[0, 1]" in result["note"]
    assert "discrete likelihood" in ml.summary(log_px, log_px, d, 10, "bernoulli")["note"]


def test_models_without_a_stochastic_encoder_have_no_posterior_and_say_why():
    spec = DataSpec((1, 28, 28), "gaussian", (0.0, 1.0), 20000)
    images = blobs(4, np.random.default_rng(0))[:, None]
    for name in ("ae", "avae", "rae", "wae", "aae"):
        model = build_model({"name": name, "latent_dim": 3, "width": 0.125}, spec).eval()
        assert model.posterior(torch.zeros(1, 1, 28, 28)) is None and model.log_prior(torch.zeros(1, 3)) is None
        assert "deterministic" in ml.absent_reason(model, images)
    for name in ("vae", "beta_tcvae", "factor_vae", "dip_vae", "vamp"):
        model = build_model({"name": name, "latent_dim": 3, "width": 0.125}, spec).eval()
        assert ml.absent_reason(model, images) is None
        z = torch.randn(6, 3, dtype=torch.float64)
        assert model.log_prior(z).shape == (6,) and model.log_prior(z).dtype == torch.float64
    vae = build_model({"name": "vae", "latent_dim": 3, "width": 0.125}, spec)
    z = torch.randn(6, 3, dtype=torch.float64)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    torch.testing.assert_close(vae.log_prior(z), expected)
    bern = build_model({"name": "vae", "latent_dim": 3, "width": 0.125},
                       DataSpec((1, 28, 28), "bernoulli", (0.0, 1.0), 100)).eval()
    assert "grey" in ml.absent_reason(bern, images)  # blobs have grey levels: BCE is no likelihood of them
    assert ml.absent_reason(bern, (images > 127).astype(np.uint8) * 255) is None


def test_vamp_is_scored_under_its_own_prior():
    spec = DataSpec((1, 28, 28), "gaussian", (0.0, 1.0), 100)
    torch.manual_seed(0)
    model = build_model({"name": "vamp", "latent_dim": 3, "width": 0.125, "components": 5}, spec).eval()
    images = blobs(6, np.random.default_rng(0))[:, None]
    log_px, elbo = ml.log_likelihoods(model, images, 16, seed=0)
    assert np.isfinite(log_px).all() and (log_px >= elbo).all()
    # the same weights under N(0, I) instead of the VampPrior give other numbers
    model.log_prior = lambda z: torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    assert not np.allclose(ml.log_likelihoods(model, images, 16, seed=0)[0], log_px)


def test_bad_sample_count_and_a_model_that_outputs_nan_are_refused():
    images = np.zeros((2, *SHAPE), np.uint8)
    with pytest.raises(AvaeError, match="at least 1 importance sample"):
        ml.log_likelihoods(linear_gaussian_vae(), images, 0, seed=0)
    broken = linear_gaussian_vae()
    with torch.no_grad():
        broken.decoder.net.bias[0] = float("nan")
    with pytest.raises(AvaeError, match="non-finite log-likelihood estimates .* for 2 held-out images"):
        ml.log_likelihoods(broken, images, 3, seed=0)


# --- a trained VAE and a trained AE, end to end ------------------------------------------------------
def trained(tmp_path_factory, model: str):
    root = tmp_path_factory.mktemp("data")
    write_mnist(root, n_train=600, n_test=60)
    cfg = config.resolve(None, ["data.name=mnist", f"data.root={root}", f"model.name={model}", "model.latent_dim=4",
                                "model.width=0.125", "train.batch_size=50", "train.epochs=1", "train.progress=false",
                                "train.figures_every=0"])
    return trainer.start(cfg, tmp_path_factory.mktemp("runs") / model)


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    return trained(tmp_path_factory, "vae")


def open_run(run_dir):
    model = run.open_model(run.read_record(run_dir), False)
    run.load_weights(model, run_dir, "last")
    cfg, _ = run.read(run_dir)
    data = load_data(cfg, cut=False)
    return model.eval().requires_grad_(False), data.test.images(np.arange(40)).numpy()


def test_the_bound_rises_with_k_and_is_finite_on_a_trained_vae(vae_run):
    model, images = open_run(vae_run)
    estimates = {k: ml.log_likelihoods(model, images, k, seed=0) for k in (1, 10, 100)}
    for k, (log_px, elbo) in estimates.items():
        assert np.isfinite(log_px).all() and np.isfinite(elbo).all()
        assert (log_px >= elbo - 1e-9).all()  # log-mean-exp ≥ mean, image by image
    np.testing.assert_array_equal(estimates[1][0], estimates[1][1])  # K = 1 is the ELBO
    means = [estimates[k][0].mean() for k in (1, 10, 100)]
    assert means[0] <= means[1] <= means[2]


def test_draws_are_seeded_per_image(vae_run):
    model, images = open_run(vae_run)
    first, _ = ml.log_likelihoods(model, images, 20, seed=5)
    np.testing.assert_array_equal(ml.log_likelihoods(model, images, 20, seed=5)[0], first)
    # the same draws whatever the batching and however many images are scored (the networks' float32
    # arithmetic may round differently in batches of other sizes)
    np.testing.assert_allclose(ml.log_likelihoods(model, images, 20, seed=5, codes_per_pass=50)[0], first, rtol=1e-8)
    np.testing.assert_allclose(ml.log_likelihoods(model, images[:9], 20, seed=5)[0], first[:9], rtol=1e-8)
    assert not np.array_equal(ml.log_likelihoods(model, images, 20, seed=6)[0], first)
    # no global state read or changed
    state = torch.get_rng_state()
    ml.log_likelihoods(model, images[:3], 4, seed=5)
    assert torch.equal(torch.get_rng_state(), state)


def test_evaluate_reports_the_likelihood_of_a_vae(vae_run, capsys, tmp_path):
    assert main(["evaluate", str(vae_run), "-n", "60", "--features", "random", "--likelihood-samples", "30",
                 "--likelihood-images", "50"]) == 0
    assert "NLL " in capsys.readouterr().out
    result = json.loads((vae_run / "evaluate.json").read_text())
    section = result["likelihood"]
    assert section["samples"] == 30 and section["n"] == 50 and section["dims"] == 1024
    assert section["bits_per_dim"] * 1024 * math.log(2) == pytest.approx(section["nll_nats"])
    assert section["neg_elbo_nats"] >= section["nll_nats"] > 0
    assert "likelihood" in result["timings_s"]
    model, _ = open_run(vae_run)
    images = load_data(run.read(vae_run)[0], cut=False).test.images(np.arange(50)).numpy()
    again = ml.estimate(model, images, 30, seed=0)  # the evaluation's seed, its own stream
    assert section["nll_nats"] == pytest.approx(again["nll_nats"], rel=1e-9)
    assert section["neg_elbo_nats"] == pytest.approx(again["neg_elbo_nats"], rel=1e-9)
    text = (vae_run / "evaluate.html").read_text()
    assert "<h2>Log-likelihood</h2>" in text and "negative log-likelihood (IWAE bound) (nats) ↓" in text
    # a headline of the benchmark and of `avae compare`
    assert headlines(result, {})["nll"] == section["nll_nats"]
    assert main(["compare", str(vae_run), str(vae_run), "--out", str(tmp_path)]) == 0
    assert "negative log-likelihood (IWAE bound) ↓" in capsys.readouterr().out

    with pytest.raises(AvaeError, match="likelihood_samples"):
        evaluate(vae_run, n=60, features="random", likelihood_samples=-1, progress=False)
    result = evaluate(vae_run, n=60, features="random", likelihood_samples=0, progress=False)
    assert result["likelihood"] == {"absent": "not computed: likelihood_samples is 0 (--likelihood-samples 0)"}


def test_evaluate_says_why_an_autoencoder_has_no_likelihood(tmp_path_factory):
    ae_run = trained(tmp_path_factory, "ae")
    evaluate(ae_run, n=60, features="random", progress=False)
    section = json.loads((ae_run / "evaluate.json").read_text())["likelihood"]
    assert list(section) == ["absent"]
    assert "ae model's encoder is deterministic" in section["absent"]
    assert "Log-likelihood: none; the ae model" in (ae_run / "evaluate.html").read_text()


def test_an_interrupted_evaluation_keeps_the_likelihood(vae_run, monkeypatch, capsys):
    from avae import evaluation as evaluation

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(evaluation, "_figures", stop)  # Ctrl-C after every number, before the pictures
        with pytest.raises(KeyboardInterrupt):
            evaluate(vae_run, n=60, seed=2, features="random", likelihood_samples=12, progress=False)
    (store,) = (vae_run / "evaluation" / "partial").iterdir()
    kept = json.loads((store / "likelihood.json").read_text())["value"]
    calls = []
    monkeypatch.setattr(ml, "estimate", lambda *a, **k: calls.append(1))
    result = evaluate(vae_run, n=60, seed=2, features="random", likelihood_samples=12, progress=False)
    assert calls == [] and result["likelihood"] == kept and kept["samples"] == 12


def test_the_command_that_continues_names_the_likelihood_flags():
    import inspect

    from avae import evaluation as evaluation

    given = {name: p.default for name, p in inspect.signature(evaluate).parameters.items()
             if p.default is not inspect.Parameter.empty}
    command = evaluation._same_command("r", {**given, "likelihood_samples": 10, "likelihood_images": 50})
    assert command == "avae evaluate r --likelihood-samples 10 --likelihood-images 50"
