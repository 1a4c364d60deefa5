"""The VampPrior VAE: its log prior against a direct computation, its KL against the VAE's when the
prior is one standard normal, the pseudo-inputs' own encoder pass under batch norm, the mixture
sampler and its moment-matched Gaussian, training, a run saved and loaded, and bad settings."""
import copy
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Normal

from avae import config, run, trainer
from avae.cli import main
from avae.errors import AvaeError
from avae.models import DataSpec, build_model
from avae.models.vamp import log_mixture_prior
from test_train import metrics, tiny

SPEC = DataSpec(shape=(1, 32, 32), likelihood="gaussian", value_range=(0.0, 1.0), train_size=500)


def small_vamp(components=6, seed=0, spread=True):
    """A tiny model; `spread`: pseudo-inputs drawn uniformly over the value range, so that the
    mixture's components differ (the model itself starts them all near one image)."""
    torch.manual_seed(seed)
    model = build_model({"name": "vamp", "latent_dim": 4, "width": 0.125, "components": components}, SPEC)
    if spread:
        with torch.no_grad():
            model.pseudo_inputs.uniform_(0.0, 1.0, generator=torch.Generator().manual_seed(seed + 100))
    return model


def images(n, seed):
    """Smooth random images in [0, 1] (blurred noise), as structured as a tiny test needs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g)
    return nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)


def direct_log_prior(z, mu_k, logvar_k):
    """log (1/K) Σ_k N(z; μ_k, σ_k²), one torch.distributions.Normal per component, in float64."""
    z = z.double()
    per = [Normal(mu_k[k].double(), torch.exp(0.5 * logvar_k[k].double())).log_prob(z).sum(1) for k in range(len(mu_k))]
    return torch.stack(per, 1)


def bn_running_stats(module):
    return {n: b.clone() for n, b in module.named_buffers()}


# --- the prior --------------------------------------------------------------------------------
def test_log_prior_equals_a_loop_over_the_components_in_float64():
    model = small_vamp(components=5).eval()
    mu_k, logvar_k = model.prior_components()
    # the components are the encoder's posterior at the clamped pseudo-inputs, on their own batch statistics
    out = copy.deepcopy(model.encoder).train()(model.pseudo_inputs.clamp(0, 1))
    torch.testing.assert_close(mu_k, out[:, :4])
    torch.testing.assert_close(logvar_k, out[:, 4:])
    assert len(set(mu_k[:, 0].tolist())) == 5  # distinct components

    g = torch.Generator().manual_seed(1)
    near = mu_k[torch.arange(12) % 5] + 0.5 * torch.randn(12, 4, generator=g)
    per = direct_log_prior(near, mu_k, logvar_k)
    linear = torch.log(per.exp().mean(1))  # the plain mixture density, fine this close to the components
    log_p = model.log_prior(near)
    assert log_p.dtype == torch.float32 and log_p.shape == (12,)
    torch.testing.assert_close(log_p.double(), linear, rtol=1e-5, atol=1e-5)

    # far from every component each density underflows, even in float64; the log-sum-exp does not
    far = torch.tensor([[40.0, -40.0, 40.0, 0.0], [300.0, 0.0, 0.0, 0.0]])
    per = direct_log_prior(far, mu_k, logvar_k)
    assert per.exp().sum() == 0
    reference = torch.logsumexp(per, 1) - math.log(5)
    log_p = model.log_prior(far)
    assert torch.isfinite(log_p).all()
    torch.testing.assert_close(log_p.double(), reference, rtol=1e-5, atol=0)

    # under bfloat16 autocast the mixture is still evaluated in float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = log_mixture_prior(near.bfloat16(), mu_k, logvar_k)
    assert under.dtype == torch.float32
    torch.testing.assert_close(under, log_mixture_prior(near.bfloat16().float(), mu_k, logvar_k))


class StandardNormalAtPseudoInputs(nn.Module):
    """The model's encoder, except that at the pseudo-inputs it outputs μ = 0, log σ² = 0."""

    def __init__(self, inner: nn.Module, pseudo: torch.Tensor):
        super().__init__()
        self.inner, self.pseudo = inner, pseudo

    def forward(self, x):
        out = self.inner(x)
        if x.shape == self.pseudo.shape and torch.equal(x, self.pseudo):
            return torch.zeros_like(out)
        return out


def independent_vae_kl(z, mu, logvar):
    """mean of log q(z|x) − log N(z; 0, I), from torch.distributions in float64."""
    q = Normal(mu.double(), torch.exp(0.5 * logvar.double()))
    p = Normal(torch.zeros_like(z, dtype=torch.float64), torch.ones_like(z, dtype=torch.float64))
    return (q.log_prob(z.double()).sum(1) - p.log_prob(z.double()).sum(1)).mean()


def test_one_standard_normal_component_gives_the_vae_single_sample_kl():
    model = small_vamp(components=1)
    model.encoder = StandardNormalAtPseudoInputs(model.encoder, model.pseudo_inputs.detach().clamp(0, 1).clone())
    x = images(6, 0)

    model.train()
    mu_k, logvar_k = model.prior_components()
    assert mu_k.abs().max() == 0 and logvar_k.abs().max() == 0  # the prior is N(0, I)
    torch.manual_seed(3)
    out = model.training_loss(x)
    mu, logvar = model.posterior(x)  # train mode: the batch's own statistics, as in the loss
    torch.testing.assert_close(out["kl"].double(), independent_vae_kl(out["z"], mu, logvar), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["loss"], out["recon"] + out["kl"])

    model.eval()
    with torch.no_grad():
        val = model.validation_loss(x)
        mu, logvar = model.posterior(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(val["kl"].double(), independent_vae_kl(z, mu, logvar), rtol=1e-5, atol=1e-5)


def test_pseudo_inputs_get_their_own_encoder_call_on_their_own_statistics_in_either_mode():
    model = small_vamp(components=8)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.encoder.modules())
    before = copy.deepcopy(model.encoder)
    x = images(10, 1)

    model.train()
    torch.manual_seed(0)
    model.training_loss(x)
    # only the batch moved the running statistics: as one training-mode pass of x alone
    alone = copy.deepcopy(before).train()
    alone(x)
    for name, value in bn_running_stats(alone).items():
        torch.testing.assert_close(dict(model.encoder.named_buffers())[name], value, rtol=0, atol=0, msg=name)
    # in training mode the components are normalised with the K pseudo-inputs' own statistics
    state = bn_running_stats(model.encoder)
    mu_k, logvar_k = model.prior_components()
    expected = copy.deepcopy(before).train()(model.pseudo_inputs.clamp(0, 1))
    torch.testing.assert_close(torch.cat([mu_k, logvar_k], 1), expected)
    assert all(torch.equal(b, state[n]) for n, b in model.encoder.named_buffers())
    mu_k.sum().backward()
    assert model.pseudo_inputs.grad.abs().sum() > 0  # the prior is learnt

    # in evaluation mode the same components (the prior sampled from is the prior trained against), not
    # those of the running statistics; cached until a weight changes; the running statistics left alone
    model.eval()
    with torch.no_grad():
        first = model.prior_components()
        assert model.prior_components()[0] is first[0]
        torch.testing.assert_close(torch.cat(first, 1), torch.cat([mu_k, logvar_k], 1).detach())
        assert not torch.allclose(torch.cat(first, 1), model.encoder(model.pseudo_inputs.clamp(0, 1)), atol=1e-3)
        assert all(torch.equal(b, state[n]) for n, b in model.encoder.named_buffers())
        model.pseudo_inputs.add_(0.1)
        again = model.prior_components()
    assert again[0] is not first[0] and not torch.equal(again[0], first[0])
    assert not model.encoder.training


# --- generation -------------------------------------------------------------------------------
def test_samples_are_seeded_and_match_the_moment_matched_gaussian():
    model = small_vamp(components=6).eval()
    with torch.no_grad():  # well-separated, narrow components: a mixture far from any one Gaussian
        last = model.encoder.net[-1]
        last.weight[:4] *= 20
        last.weight[4:] *= 0.1
        last.bias[4:] = -2.0
    gen = lambda seed: torch.Generator().manual_seed(seed)
    a, b, c = model.sample_latent(500, gen(5)), model.sample_latent(500, gen(5)), model.sample_latent(500, gen(6))
    assert a.dtype == torch.float32 and a.device.type == "cpu" and a.shape == (500, 4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert model.sample_latent(0, gen(0)).shape == (0, 4)
    torch.manual_seed(2)
    d = model.sample_latent(7)
    torch.manual_seed(2)
    assert torch.equal(d, model.sample_latent(7))

    # the moment-matched Gaussian, computed here from the components
    with torch.no_grad():
        mu_k, logvar_k = (t.double() for t in model.prior_components())
    second = torch.stack([torch.diag(logvar_k[k].exp()) + torch.outer(mu_k[k], mu_k[k]) for k in range(6)]).mean(0)
    mean = mu_k.mean(0)
    cov = second - torch.outer(mean, mean)
    got_mean, got_cov = model.sampling_distribution
    assert got_mean.dtype == torch.float64 and got_cov.dtype == torch.float64
    torch.testing.assert_close(got_mean, mean)
    torch.testing.assert_close(got_cov, cov)
    m, tril = model.sampling_gaussian()
    torch.testing.assert_close(m, mean)
    torch.testing.assert_close(tril @ tril.T, cov)
    assert model.latent_variance == pytest.approx(float(torch.diagonal(cov).mean()))
    assert (cov.diagonal() > 5 * logvar_k.exp().mean(0)).all()  # mostly the spread of the components' means

    z = model.sample_latent(200_000, gen(0)).double()
    scale = cov.diagonal().max().sqrt().item()
    torch.testing.assert_close(z.mean(0), mean, rtol=0, atol=0.02 * scale)
    torch.testing.assert_close(torch.cov(z.T), cov, rtol=0, atol=0.03 * scale**2)

    # generation uses the encoder in evaluation mode and leaves a training model as it was
    model.train()
    running = bn_running_stats(model.encoder)
    assert torch.equal(model.sample_latent(500, gen(5)), a)
    assert model.encoder.training and all(torch.equal(b, running[n]) for n, b in model.encoder.named_buffers())


def test_its_own_sampler_scores_codes_by_the_mixture_density_itself():
    """The `prior` sampler's log density of vamp is the mixture's (float64, in chunks), not the
    moment-matched Gaussian's, so a fit report and evaluate.json give it a log-likelihood."""
    from avae.samplers.prior import PriorSampler

    model = small_vamp(components=5).eval()
    sampler = PriorSampler.of_model(model)
    assert sampler.has_density
    z = model.sample_latent(23, torch.Generator().manual_seed(3))
    with torch.no_grad():
        reference = torch.logsumexp(direct_log_prior(z, *model.prior_components()), 1) - math.log(5)
    log_p = sampler.log_prob(z)
    assert log_p.dtype == torch.float64 and log_p.shape == (23,)
    torch.testing.assert_close(log_p, reference, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(model.sampling_log_prob(z, chunk=4), log_p, rtol=0, atol=1e-12)
    mean, tril = model.sampling_gaussian()
    gaussian = torch.distributions.MultivariateNormal(mean, scale_tril=tril).log_prob(z.double())
    assert not torch.allclose(log_p, gaussian, atol=0.1)


# --- training -----------------------------------------------------------------------------------
def train_steps(model, optimizer, x, steps, first_seed=0):
    model.train()
    losses = []
    for step in range(first_seed, first_seed + steps):
        torch.manual_seed(step)
        out = model.training_loss(x)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        model.after_step(None, x, out)
        losses.append(float(out["loss"].detach()))
        assert model.pseudo_inputs.grad is None  # stepped and cleared
    return losses


def test_a_few_steps_lower_the_loss_and_move_the_pseudo_inputs():
    model = small_vamp(components=5, spread=False)
    start = model.pseudo_inputs.detach().clone()
    assert start.mean().item() == pytest.approx(0.05, abs=0.002) and start.std().item() == pytest.approx(0.01, rel=0.1)
    x = images(16, 2)
    optimizer = torch.optim.Adam([*model.encoder.parameters(), *model.decoder.parameters()], lr=3e-3)
    losses = train_steps(model, optimizer, x, 20)
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5])
    assert all(math.isfinite(v) for v in losses)
    assert not torch.equal(model.pseudo_inputs, start)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        val = model.validation_loss(x)
    assert all(torch.isfinite(v).all() for v in val.values())


def test_the_pseudo_inputs_optimizer_resumes_exactly():
    x = images(8, 3)
    a = small_vamp(components=4)
    opt_a = torch.optim.Adam([*a.encoder.parameters(), *a.decoder.parameters()], lr=1e-3)
    train_steps(a, opt_a, x, 3)
    b = small_vamp(components=4)
    b.load_state_dict(a.state_dict())
    b.load_extra_state(copy.deepcopy(a.extra_state()))
    opt_b = torch.optim.Adam([*b.encoder.parameters(), *b.decoder.parameters()], lr=1e-3)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))  # (a plain load would share the moment tensors)
    train_steps(a, opt_a, x, 2, first_seed=3)
    train_steps(b, opt_b, x, 2, first_seed=3)
    assert torch.equal(a.pseudo_inputs, b.pseudo_inputs)
    assert a.pseudo_optimizer.state_dict()["state"][0]["step"] == 5


# --- a run, saved and loaded ---------------------------------------------------------------------
def test_a_run_trains_saves_and_loads_the_same_sampler(mnist_root, tmp_path):
    cfg = config.resolve(None, tiny(mnist_root, "train.epochs=1", "train.figures_every=1", "train.lr=2e-3",
                                    "model.components=10", model="vamp"))
    assert cfg.params.components == 10 and cfg.params.pseudo_lr == 5e-4
    run_dir = trainer.start(cfg, tmp_path / "vamp")
    (m,) = metrics(run_dir)
    for key in ("train_loss", "train_kl", "val_loss", "val_kl", "val_recon"):
        assert math.isfinite(m[key]), key
    assert {p.name for p in (run_dir / "figures" / "epoch_001").iterdir()} >= {"samples.png", "latents.png"}

    initial = run.open_model(run.read_record(run_dir), False).pseudo_inputs
    a, b = run.load(run_dir), run.load(run_dir)
    saved = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert torch.equal(a.pseudo_inputs, saved["model"]["pseudo_inputs"]) and not torch.equal(a.pseudo_inputs, initial)
    assert saved["model_extra"]["pseudo_optimizer"]["state"][0]["step"] == 10  # one step per batch
    za, zb = a.sample_latent(64, torch.Generator().manual_seed(4)), b.sample_latent(64, torch.Generator().manual_seed(4))
    assert torch.equal(za, zb)
    torch.testing.assert_close(a.sample(5, torch.Generator().manual_seed(1)), b.sample(5, torch.Generator().manual_seed(1)))
    mean, cov = a.sampling_distribution
    assert torch.isfinite(mean).all() and torch.isfinite(cov).all()

    assert main(["sample", str(run_dir), "-n", "4", "--seed", "3"]) == 0
    first = np.load(run_dir / "samples.npy")
    assert main(["sample", str(run_dir), "-n", "4", "--seed", "3"]) == 0
    assert first.shape == (4, 1, 32, 32) and first.dtype == np.uint8
    assert np.array_equal(first, np.load(run_dir / "samples.npy"))

    # the export holds the mixture it samples from, not its moment-matched Gaussian
    assert main(["export", str(run_dir), "--out", str(tmp_path / "exp")]) == 0
    mixture = torch.load(tmp_path / "exp" / "sampler.pt", weights_only=True)
    mu_k, logvar_k = a.inference_components()
    torch.testing.assert_close(mixture["means"], mu_k.float())
    torch.testing.assert_close(torch.diagonal(mixture["scale_trils"], dim1=1, dim2=2), torch.exp(0.5 * logvar_k).float())
    assert mixture["weights"].shape == (10,) and float(mixture["weights"].sum()) == pytest.approx(1.0)


# --- bad settings ----------------------------------------------------------------------------------
def test_no_components_is_a_one_line_error(capsys, mnist_root, tmp_path):
    with pytest.raises(AvaeError, match="model.components must be an integer ≥ 1") as err:
        build_model({"name": "vamp", "latent_dim": 4, "width": 0.125, "components": 0}, SPEC)
    assert "\n" not in str(err.value)
    with pytest.raises(AvaeError, match="model.pseudo_lr must be a number > 0"):
        build_model({"name": "vamp", "pseudo_lr": 0}, SPEC)
    argv = ["train", "--dataset", "mnist", "--data-root", str(mnist_root), "--model", "vamp",
            "--out", str(tmp_path / "r"), "--set", "model.components=0"]
    assert main(argv) == 2
    out = capsys.readouterr().err
    assert out.count("\n") == 1 and "model.components must be an integer ≥ 1" in out and "Traceback" not in out
    assert not (tmp_path / "r").exists()
