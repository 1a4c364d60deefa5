"""The baselines: known answers of their regularisers, their discriminators, their per-dataset
defaults, and each one trained, resumed and sampled from the CLI on the tiny MNIST fixture."""
import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from avae import config, run, schema, trainer
from avae.cli import main
from avae.errors import AvaeError
from avae.models import MODELS, DataSpec, ModelSettings, build_model, seeded_model
from avae.models import regularisers as R
from avae.data import load_data
from test_train import metrics, tiny

BASELINES = ["vae", "beta_vae", "beta_tcvae", "factor_vae", "dip_vae", "wae", "rae", "aae"]
GAUSSIAN = ["vae", "beta_vae", "beta_tcvae", "factor_vae", "dip_vae"]
DATASETS = ["mnist", "fashion_mnist", "cifar10", "celeba", "dsprites", "shapes3d"]
SPEC = DataSpec(shape=(1, 32, 32), likelihood="gaussian", value_range=(0.0, 1.0), train_size=500)


def small_model(name, **params):
    return build_model({"name": name, "latent_dim": 4, "width": 0.125, **params}, SPEC)


# --- registry ---------------------------------------------------------------------------------
def test_every_model_is_registered_and_listed(capsys):
    assert set(BASELINES) | {"avae", "ae"} <= set(MODELS)
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in BASELINES:
        (line,) = [line for line in lines if line.split()[0] == name]
        assert MODELS[name].description in line and f"[samples: {MODELS[name].sampler}]" in line
    assert "fitted" in MODELS["rae"].sampler and MODELS["vae"].sampler == "prior N(0, I)"


@pytest.mark.parametrize("name", GAUSSIAN)
def test_gaussian_encoders_double_the_final_layer_and_encode_the_mean(name):
    model = small_model(name)
    assert model.codes_per_latent == 2 and model.encoder.net[-1].out_features == 8
    x = torch.rand(3, 1, 32, 32)
    model.eval()
    mu, logvar = model.posterior(x)
    torch.testing.assert_close(model.encode(x), mu)
    assert logvar.shape == (3, 4)


@pytest.mark.parametrize("name", ["wae", "rae", "aae"])
def test_deterministic_encoders_keep_one_output_per_latent(name):
    assert small_model(name).encoder.net[-1].out_features == 4


# --- VAE: KL and the reparameterisation ---------------------------------------------------------
def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(50, 6, generator=g) * 2, torch.randn(50, 6, generator=g)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros(6), torch.ones(6))
    torch.testing.assert_close(R.gaussian_kl(mu, logvar), torch.distributions.kl_divergence(q, p).sum(1))
    assert R.gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max() == 0


def test_reparameterisation_uses_the_global_rng_and_validation_does_not():
    model = small_model("vae")
    x = torch.rand(4, 1, 32, 32)
    torch.manual_seed(1)
    a = model.training_loss(x)["loss"]
    torch.manual_seed(1)
    b = model.training_loss(x)["loss"]
    c = model.training_loss(x)["loss"]
    assert a == b and a != c
    model.eval()
    state = torch.get_rng_state()
    v1, v2 = model.validation_loss(x), model.validation_loss(x)
    assert torch.equal(torch.get_rng_state(), state)
    assert v1["loss"] == v2["loss"] and v1["objective"] == v1["loss"]
    # validation decodes the mean: its recon is the cost of decode(encode(x))
    recon = model.likelihood.per_image(model.decoder(model.encode(x)), x).mean()
    torch.testing.assert_close(v1["recon"], recon)
    torch.testing.assert_close(v1["kl"], R.gaussian_kl(*model.posterior(x)).mean())


def test_beta_vae_weights_the_kl_by_beta():
    model = small_model("beta_vae", beta=3.0)
    x = torch.rand(4, 1, 32, 32)
    model.eval()
    out = model.validation_loss(x)
    torch.testing.assert_close(out["loss"], out["recon"] + 3.0 * out["kl"])


# --- β-TCVAE: minibatch-stratified TC --------------------------------------------------------
def test_mss_weights_sum_to_one_per_row():
    for b, n in [(2, 10), (5, 5), (100, 50000), (7, 3)]:
        w = R.mss_log_weights(b, n, dtype=torch.float64).exp()
        torch.testing.assert_close(w.sum(1), torch.ones(b, dtype=torch.float64))
        assert torch.allclose(w.diagonal(), torch.full((b,), 1 / max(n, b), dtype=torch.float64))


def posterior_samples(mu, std, generator):
    logvar = torch.full_like(mu, 2 * math.log(std))
    return R.reparameterise(mu, logvar, generator), mu, logvar


def test_tc_of_independent_codes_is_near_zero_and_of_correlated_codes_large():
    g = torch.Generator().manual_seed(0)
    n, l = 1000, 4
    independent = posterior_samples(torch.randn(n, l, generator=g), 1.0, g)
    u = torch.randn(n, 1, generator=g).expand(n, l) * 3
    correlated = posterior_samples(u.contiguous(), 1.0, g)
    tc_ind = R.total_correlation(*independent, dataset_size=n).item()
    tc_cor = R.total_correlation(*correlated, dataset_size=n).item()
    assert abs(tc_ind) < 0.03
    # the aggregate is exactly N(0, Σ), Σ = 9·11ᵀ + I, whose TC is ½(Σ_j log Σ_jj − log det Σ) ≈ 2.80 nats
    cov = 9 * torch.ones(l, l) + torch.eye(l)
    gaussian_tc = 0.5 * (torch.log(torch.diagonal(cov)).sum() - torch.logdet(cov)).item()
    assert tc_cor == pytest.approx(gaussian_tc, rel=0.05)


def test_tc_decomposition_sums_to_the_single_sample_kl():
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(64, 5, generator=g), torch.randn(64, 5, generator=g) * 0.3
    z = R.reparameterise(mu, logvar, g)
    t = R.tc_decomposition(z, mu, logvar, dataset_size=5000)
    log_qz_x = R.log_normal(z, mu, logvar).sum(1)
    log_pz = R.log_normal(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    torch.testing.assert_close(t["mi"] + t["tc"] + t["dim_kl"], (log_qz_x - log_pz).mean())
    model = small_model("beta_tcvae", beta=6.0, alpha=1.0, gamma=1.0)
    reg, parts = model.regulariser(z, mu, logvar)
    torch.testing.assert_close(reg, parts["mi"] + 6.0 * parts["tc"] + parts["dim_kl"])


# --- FactorVAE: permuted codes -----------------------------------------------------------------
def test_permute_dims_keeps_each_column_but_breaks_correlation():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(2000, 1, generator=g)
    z = torch.cat([u, 2 * u, -u], 1)
    p = R.permute_dims(z, torch.Generator().manual_seed(1))
    for j in range(3):
        assert torch.equal(torch.sort(p[:, j]).values, torch.sort(z[:, j]).values)
    assert not torch.equal(p, z)
    corr = torch.corrcoef(p.T)
    assert corr[0, 1].abs() < 0.1 and corr[0, 2].abs() < 0.1 and torch.corrcoef(z.T)[0, 1] > 0.999


# --- DIP-VAE-I -------------------------------------------------------------------------------------
def test_dip_penalty_is_zero_for_identity_covariance_and_known_otherwise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 3, generator=g, dtype=torch.float64)
    x = x - x.mean(0)
    white = x @ torch.linalg.inv(torch.linalg.cholesky(x.T @ x / 200)).T  # batch covariance exactly I
    torch.testing.assert_close(R.code_covariance(white), torch.eye(3, dtype=torch.float64))
    assert R.dip_penalty(white + 5.0, 10.0, 100.0).item() == pytest.approx(0.0, abs=1e-18)
    # two points ±(a, b): covariance [[a², ab], [ab, b²]]
    mu = torch.tensor([[math.sqrt(2), 0.5 / math.sqrt(2)], [-math.sqrt(2), -0.5 / math.sqrt(2)]])
    torch.testing.assert_close(R.code_covariance(mu), torch.tensor([[2.0, 0.5], [0.5, 0.125]]))
    expected = 3.0 * 2 * 0.5**2 + 7.0 * ((2 - 1) ** 2 + (0.125 - 1) ** 2)
    assert R.dip_penalty(mu, 3.0, 7.0).item() == pytest.approx(expected)


# --- WAE-MMD ---------------------------------------------------------------------------------------
def test_imq_kernel_and_scales_known_values():
    assert R.wae_scales(16) == tuple(32 * s for s in R.WAE_SCALES)
    assert R.wae_scales(8, prior_var=2.0)[3] == 32.0
    x, y = torch.zeros(1, 2), torch.tensor([[1.0, 1.0]])
    assert R.imq_kernel(x, x, (1.0, 3.0)).item() == pytest.approx(2.0)
    assert R.imq_kernel(x, y, (1.0, 3.0)).item() == pytest.approx(1 / 3 + 3 / 5)


def test_mmd_is_zero_on_itself_near_zero_for_one_distribution_and_grows_with_shift():
    g = torch.Generator().manual_seed(0)
    l = 8
    scales = R.wae_scales(l)
    x, y = torch.randn(500, l, generator=g), torch.randn(500, l, generator=g)
    assert R.mmd(x, x, scales, unbiased=False).abs().item() < 1e-5
    same = R.mmd(x, y, scales).item()
    shifts = [R.mmd(x, y + s, scales).item() for s in (0.25, 0.5, 1.0, 2.0)]
    assert abs(same) < 0.2 * shifts[0]
    assert all(a < b for a, b in zip(shifts, shifts[1:]))


def test_unbiased_mmd_matches_the_u_statistic_by_hand():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(5, 3, generator=g), torch.randn(4, 3, generator=g) + 1
    k = lambda a, b: sum(c / (c + float(((a - b) ** 2).sum())) for c in (0.5, 6.0))
    xx = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / 20
    yy = sum(k(y[i], y[j]) for i in range(4) for j in range(4) if i != j) / 12
    xy = sum(k(x[i], y[j]) for i in range(5) for j in range(4)) / 20
    assert R.mmd(x, y, (0.5, 6.0)).item() == pytest.approx(xx + yy - 2 * xy, rel=1e-5)


def test_regularisers_stay_in_float32_under_bfloat16_autocast():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(200, 16, generator=g) * 3, torch.randn(200, 16, generator=g)
    mu, logvar = torch.randn(100, 6, generator=g), torch.randn(100, 6, generator=g) * 0.2
    z = R.reparameterise(mu, logvar, g)
    scales = R.wae_scales(16)
    exact = (R.mmd(x, y, scales), R.dip_penalty(mu, 10.0, 100.0), R.total_correlation(z, mu, logvar, 1000))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = (R.mmd(x, y, scales), R.dip_penalty(mu, 10.0, 100.0), R.total_correlation(z, mu, logvar, 1000))
    for a, b in zip(exact, under):
        assert b.dtype == torch.float32
        torch.testing.assert_close(a, b)


# --- RAE -------------------------------------------------------------------------------------------
def test_rae_penalties_known_values():
    assert R.code_l2(torch.tensor([[3.0, 4.0], [0.0, 0.0]])).item() == pytest.approx(6.25)
    net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Conv2d(1, 1, 2))
    for p in net.parameters():
        nn.init.constant_(p, 2.0)
    assert R.weight_l2(net).item() == pytest.approx(6 * 4 + 4 * 4)  # weights only: no biases, no BN
    model = small_model("rae", code_weight=0.5, decoder_l2=0.01)
    x = torch.rand(4, 1, 32, 32)
    out = model.training_loss(x)
    torch.testing.assert_close(out["decoder_l2"], R.weight_l2(model.decoder))
    torch.testing.assert_close(out["loss"], out["recon"] + 0.5 * out["code_l2"] + 0.01 * out["decoder_l2"])


# --- discriminators ----------------------------------------------------------------------------------
def built(root, tmp_path, name, *extra):
    cfg = config.resolve(None, tiny(root, *extra, model=name))
    data = load_data(cfg)
    model = seeded_model(cfg, data)
    return trainer.Trainer(cfg, tmp_path, data, model)


@pytest.mark.parametrize("name", ["factor_vae", "aae"])
def test_discriminator_step_updates_only_the_discriminator(mnist_root, tmp_path, name):
    loop = built(mnist_root, tmp_path, name)
    model = loop.model
    disc = dict(model.discriminator.named_parameters())
    in_main = {id(p) for group in loop.optimizer.param_groups for p in group["params"]}
    assert not in_main & {id(p) for p in disc.values()}  # the trainer's Adam never sees them
    assert in_main == {id(p) for p in [*model.encoder.parameters(), *model.decoder.parameters()]}
    assert {id(p) for group in model.disc_optimizer.param_groups for p in group["params"]} == {id(p) for p in disc.values()}

    x = loop.prepare(loop.data.train.images(np.arange(50)))
    model.train()
    losses = model.training_loss(x)
    reg = losses["tc" if name == "factor_vae" else "adv"]
    enc_grad = torch.autograd.grad(reg, list(model.encoder.parameters()), retain_graph=True, allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in enc_grad)  # the adversary's signal reaches the encoder
    loop.optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    assert all(p.grad is None for p in disc.values())  # ... but the encoder's loss leaves the discriminator alone
    grads = {n: p.grad.clone() for n, p in model.encoder.named_parameters()}
    loop.optimizer.step()
    autoencoder = {n: p for n, p in model.named_parameters() if n.startswith(("encoder.", "decoder."))}
    weights = {n: p.detach().clone() for n, p in autoencoder.items()}
    before = {n: p.detach().clone() for n, p in disc.items()}

    model.after_step(loop.context, x, losses)
    for n, p in disc.items():
        assert not torch.equal(p, before[n]), n
    for n, p in autoencoder.items():
        assert torch.equal(p, weights[n]), n
    for n, p in model.encoder.named_parameters():
        assert torch.equal(p.grad, grads[n]), n
    assert len(model.disc_optimizer.state) == len(disc)


def test_factor_vae_discriminator_learns_the_total_correlation_of_correlated_codes():
    model = small_model("factor_vae", disc_hidden=[512, 512], disc_lr=3e-3)  # 64 units at width 0.125
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    for _ in range(100):
        u = torch.randn(128, 1, generator=g)
        codes = torch.cat([u, u, -u, torch.randn(128, 1, generator=g)], 1)
        model.after_step(None, None, {"z": codes})
    u = torch.randn(1000, 1, generator=g)
    correlated = torch.cat([u, u, -u, torch.randn(1000, 1, generator=g)], 1)
    independent = torch.randn(1000, 4, generator=g)
    assert model.tc_estimate(correlated).item() > 1.0
    assert model.tc_estimate(independent).item() < model.tc_estimate(correlated).item() - 1.0
    assert model.epoch_summary()["disc_loss"] < 0.6


def test_aae_discriminator_tells_shifted_codes_from_the_prior():
    model = small_model("aae", disc_hidden=[512, 512])
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    for _ in range(100):
        model.after_step(None, None, {"z": torch.randn(128, 4, generator=g) + 3})
    assert model.epoch_summary()["disc_loss"] < 0.35
    z = torch.randn(500, 4, generator=g) + 3
    assert torch.sigmoid(model.frozen_discriminator(z)).mean() < 0.1  # "not from the prior"
    assert torch.sigmoid(model.frozen_discriminator(torch.randn(500, 4, generator=g))).mean() > 0.7


# --- settings and per-dataset defaults --------------------------------------------------------------
@pytest.mark.parametrize("dataset", DATASETS)
def test_every_dataset_preset_gives_valid_settings_for_every_model(dataset):
    for name in BASELINES:
        cfg = config.resolve(None, [f"data.name={dataset}", f"model.name={name}"])
        specific = {k: v for k, v in cfg.to_dict()["model"].items() if k not in schema.fields(ModelSettings)}
        MODELS[name].Params(**specific)  # no unknown key
        assert isinstance(cfg.params, MODELS[name].Params)


PAPER = {  # paper-notes §5–§6 (E Table XI, AAE on CelebA from version I, Table X)
    "beta_tcvae.beta": {"mnist": 2, "fashion_mnist": 2, "celeba": 2, "cifar10": 2, "dsprites": 5, "shapes3d": 5},
    "wae.mmd_weight": {"mnist": 10, "fashion_mnist": 10, "celeba": 100, "cifar10": 100, "dsprites": 10, "shapes3d": 10},
    "wae.recon_scale": dict.fromkeys(DATASETS, 0.05),
    "aae.recon_scale": dict.fromkeys(DATASETS, 0.05),
    "aae.adv_weight": {"mnist": 1, "fashion_mnist": 1, "celeba": 0.1, "cifar10": 1, "dsprites": 1, "shapes3d": 1},
    "aae.disc_hidden": {"mnist": [100] * 3, "fashion_mnist": [100] * 3, "celeba": [1024, 4096, 1024],
                        "cifar10": [1024, 4096, 1024], "dsprites": [1024] * 3, "shapes3d": [1024] * 3},
    "rae.code_weight": {"mnist": 1e-4, "fashion_mnist": 1e-4, "celeba": 1e-4, "cifar10": 1e-3, "dsprites": 1e-4, "shapes3d": 1e-4},
    "rae.decoder_l2": {"mnist": 1e-7, "fashion_mnist": 1e-7, "celeba": 1e-7, "cifar10": 1e-6, "dsprites": 1e-6, "shapes3d": 1e-6},
}


@pytest.mark.parametrize("key", sorted(PAPER))
def test_paper_defaults_per_dataset(key):
    name, setting = key.split(".")
    for dataset, value in PAPER[key].items():
        cfg = config.resolve(None, [f"data.name={dataset}", f"model.name={name}"])
        assert getattr(cfg.params, setting) == value, (dataset, key)


def test_params_dataclasses_hold_generic_defaults():
    fv = MODELS["factor_vae"].Params()
    assert (fv.disc_hidden, fv.disc_lr, fv.disc_betas) == ([1000] * 6, 1e-4, [0.5, 0.9])  # Kim & Mnih
    assert dataclasses.asdict(MODELS["wae"].Params())["recon_scale"] == 0.05


@pytest.mark.parametrize("name,setting,says", [
    ("beta_vae", {"beta": "big"}, "model.beta must be a number"),
    ("beta_tcvae", {"beta": -1}, "model.beta must be a number ≥ 0"),
    ("wae", {"recon_scale": 0}, "model.recon_scale must be a number > 0"),
    ("factor_vae", {"disc_hidden": [0, 10]}, "model.disc_hidden must be a non-empty list of integers ≥ 1 and ≤ 65,536"),
    ("aae", {"disc_betas": [0.5]}, "model.disc_betas must be a list of 2 numbers ≥ 0 and < 1"),
    ("rae", {"nonsense": 1}, "no setting model.nonsense"),
])
def test_bad_settings_name_the_problem(name, setting, says):
    with pytest.raises(AvaeError, match=says):
        small_model(name, **setting)


# --- end to end from the CLI ---------------------------------------------------------------------
def cli_train(root, out, name, *extra):
    sets = ["model.width=0.125", "model.latent_dim=4", "train.batch_size=50", "train.lr=2e-3", "train.progress=false", *extra]
    argv = ["train", "--dataset", "mnist", "--data-root", str(root), "--model", name, "--out", str(out)]
    return main(argv + [arg for s in sets for arg in ("--set", s)])


@pytest.mark.parametrize("name", BASELINES)
def test_each_model_trains_writes_the_run_directory_and_samples(mnist_root, tmp_path, name):
    run_dir = tmp_path / name
    assert cli_train(mnist_root, run_dir, name, "train.epochs=2", "train.figures_every=2") == 0
    m = metrics(run_dir)
    assert [r["epoch"] for r in m] == [1, 2] and m[0]["steps"] == 10
    assert m[1]["train_loss"] < m[0]["train_loss"] and m[1]["val_recon"] < m[0]["val_recon"]
    for key in ("val_loss", "val_objective", "val_recon", "lr", "epoch_s", "images_per_s"):
        assert math.isfinite(m[1][key]), key
    if name in ("factor_vae", "aae"):
        assert math.isfinite(m[1]["disc_loss"])
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {"last.pt", "best.pt"}
    assert {p.name for p in (run_dir / "figures" / "epoch_002").iterdir()} == {
        "samples.png", "reconstructions.png", "latents.png", "norms.png"}
    assert config.load_yaml((run_dir / "config.yaml").read_text())["model"]["name"] == name
    assert main(["sample", str(run_dir), "-n", "4"]) == 0
    images = np.load(run_dir / "samples.npy")
    assert images.shape == (4, 1, 32, 32) and images.dtype == np.uint8


def test_rae_samples_from_the_gaussian_fitted_to_its_codes(mnist_root, tmp_path):
    run_dir = tmp_path / "rae"
    assert cli_train(mnist_root, run_dir, "rae", "train.epochs=1", "train.figures_every=0") == 0
    model = run.load(run_dir)
    assert not torch.equal(model.code_cov, torch.eye(4, dtype=torch.float64))
    z = model.sample_latent(20000, torch.Generator().manual_seed(0)).double()
    torch.testing.assert_close(z.mean(0), model.code_mean, atol=0.05 * model.code_cov.diagonal().max().sqrt().item(), rtol=0)
    torch.testing.assert_close(torch.cov(z.T), model.code_cov, rtol=0.1, atol=0.05 * model.code_cov.diagonal().max().item())
    mean, cov = model.sampling_distribution  # the target evaluation scores held-out codes against
    assert torch.equal(mean, model.code_mean) and torch.equal(cov, model.code_cov)


# Resuming after SIGKILL (vae, factor_vae, aae and the AVAE): tests/test_train.py.
