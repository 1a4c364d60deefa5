"""The VampPrior VAE (Tomczak & Welling 2018, "VAE with a VampPrior").

The prior is a uniform mixture of the encoder's own Gaussian posteriors at K learnt
pseudo-inputs u_1 … u_K (images of the data's shape):

    p(z) = (1/K) Σ_k q(z | u_k),   q(z | u) = N(μ(u), diag σ²(u)).

Loss per image, with the VAE's network, likelihood and reparameterised sample z ~ q(z | x):
reconstruction + the single-sample KL estimate log q(z | x) − log p(z), where log p(z) is a
log-sum-exp over the K components in float32 (never a sum of densities, which underflows).

Pseudo-inputs. The paper produces them with a learnt linear map of the one-hot identity e_k
followed by a hard-tanh onto [0, 1]; a bias-free linear map of a one-hot vector is just a free
parameter per pseudo-input, so here each u_k is a parameter of image shape, clamped to the data's
value range when it is used (the hard-tanh: no gradient moves a clamped pixel further out).
They start as the paper initialises its map for MNIST, at 5% of the way up the value range with
noise of 1% of the range (N(0.05, 0.01) on [0, 1]), drawn from torch's global stream, which
`trainer.seeded_model` seeds before the networks' weights. The trainer's Adam holds only the encoder
and decoder, so the pseudo-inputs have their own Adam (`pseudo_lr`, fixed: the trainer's plateau
schedule does not reach it), stepped in `after_step` on the gradient of the same backward pass
(averaged over ranks under torchrun); its state is checkpointed through `extra_state`.

Batch norm. The K pseudo-inputs are encoded in a call of their own (encoding them together with
the batch would mix their statistics into the batch's), and batch norm normalises them with the
statistics of the K pseudo-inputs, in training and in evaluation alike: the prior that generation
draws from and the NLL scores against is the very one the KL trained against. (With the data's
running statistics in evaluation, the components of a trained model sat near the origin, far from
the codes: on paper-cpu's Fashion-MNIST its samples had a Fréchet distance of 394 against the
VAE's 111.) The call runs on copies of the encoder's buffers, so the running statistics remain the
data's. Outside training the components are cached until a weight, buffer or pseudo-input changes.

Generation draws a component uniformly, then z ~ q(z | u_k).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.func import functional_call

from .base import register_model
from .regularisers import full_precision, log_normal
from .vae import GaussianVAE
from .. import schema
from ..schema import setting

INIT_LEVEL, INIT_NOISE = 0.05, 0.01  # the pseudo-inputs' start, as fractions of the value range (the paper's MNIST values)
ADAM_EPS = 1e-7  # as the trainer's optimizer (Keras' epsilon)


@full_precision
def log_mixture_prior(z: torch.Tensor, mu_k: torch.Tensor, logvar_k: torch.Tensor) -> torch.Tensor:
    """log (1/K) Σ_k N(z; μ_k, diag σ_k²) for each row of z (B, l), given the components' μ_k and
    log σ_k² (K, l); shape (B,). A log-sum-exp over the components, outside autocast."""
    per_component = log_normal(z.unsqueeze(1), mu_k.unsqueeze(0), logvar_k.unsqueeze(0)).sum(2)  # (B, K)
    return torch.logsumexp(per_component, 1) - math.log(mu_k.shape[0])


@full_precision
def single_sample_kl(z, mu, logvar, mu_k, logvar_k) -> torch.Tensor:
    """log q(z | x) − log p(z) per row (B,): z a sample of N(μ, diag σ²), p the mixture of (μ_k, σ_k²)."""
    return log_normal(z, mu, logvar).sum(1) - log_mixture_prior(z, mu_k, logvar_k)


@register_model
class VampVAE(GaussianVAE):
    name = "vamp"
    description = ("VampPrior VAE (Tomczak & Welling 2018): recon + single-sample KL to a mixture of the "
                   "encoder's posteriors at K learnt pseudo-inputs")
    sampler = "the VampPrior: the encoder's posterior at one of K learnt pseudo-inputs"

    @dataclass(frozen=True)
    class Params:
        components: int = setting(500, minimum=1, maximum=65536)  # K, the number of pseudo-inputs (the paper's 500)
        pseudo_lr: float = setting(5e-4, above=0)  # Adam learning rate of the pseudo-inputs (the paper's, for all weights)

    def __init__(self, spec, latent_dim, arch, width, params: Params):
        super().__init__(spec, latent_dim, arch, width, params)
        schema.check_value("model.components", params.components, *schema.fields(self.Params)["components"])
        lo, hi = spec.value_range
        start = lo + (hi - lo) * (INIT_LEVEL + INIT_NOISE * torch.randn(params.components, *spec.shape))
        self.pseudo_inputs = torch.nn.Parameter(start)
        self.pseudo_optimizer = torch.optim.Adam([self.pseudo_inputs], lr=params.pseudo_lr, eps=ADAM_EPS)
        self._cached = None  # (weights key, (μ_k, log σ_k²)) of the evaluation-mode components

    # --- the prior ----------------------------------------------------------------------------
    def pseudo_images(self) -> torch.Tensor:
        """The K pseudo-inputs as the encoder sees them: clamped to the value range (the paper's hard-tanh)."""
        lo, hi = self.spec.value_range
        return self.pseudo_inputs.clamp(lo, hi)

    def prior_components(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ_k, log σ_k²), each (K, l) in float32: the encoder's posterior at the pseudo-inputs, from one
        encoder call of their own normalised by their own batch statistics, whatever the encoder's mode."""
        if self.encoder.training or torch.is_grad_enabled():  # being trained: nothing cached
            return self._components()
        key = self._weights_key()
        if key is None or self._cached is None or self._cached[0] != key:
            self._cached = (key, self._components())
        return self._cached[1]

    def _components(self) -> tuple[torch.Tensor, torch.Tensor]:
        was_training = self.encoder.training
        self.encoder.train()  # batch norm on the pseudo-inputs' own statistics, updating copies of the buffers
        try:
            buffers = {name: b.clone() for name, b in self.encoder.named_buffers()}
            out = functional_call(self.encoder, buffers, (self.pseudo_images(),)).float()
        finally:
            self.encoder.train(was_training)
        return out[:, : self.latent_dim], out[:, self.latent_dim :]

    def _weights_key(self):
        """What the evaluation-mode components depend on, changed by any in-place update (an optimizer
        step, load_state_dict, a move to another device); None where it cannot be read."""
        tensors = [self.pseudo_inputs, *self.encoder.parameters(), *self.encoder.buffers()]
        try:
            return tuple((id(t), t.data_ptr(), t._version) for t in tensors)
        except RuntimeError:  # tensors made in inference mode keep no version
            return None

    @torch.no_grad()
    def inference_components(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The components generation draws from (cached as in evaluation mode), whatever the encoder's mode now."""
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            return self.prior_components()
        finally:
            self.encoder.train(was_training)

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) (B,) under the VampPrior, its components in the encoder's current mode."""
        return log_mixture_prior(z, *self.prior_components())

    def regulariser(self, z, mu, logvar):
        kl = single_sample_kl(z, mu, logvar, *self.prior_components()).mean()
        return kl, {"kl": kl}

    # --- the pseudo-inputs' own optimizer ---------------------------------------------------------
    def after_step(self, ctx, x, losses):
        """One Adam step of the pseudo-inputs on the gradient the trainer's backward pass left on them."""
        if self.pseudo_inputs.grad is None:
            return
        if ctx is not None:
            ctx.dist.average_gradients([self.pseudo_inputs])
        self.pseudo_optimizer.step()
        self.pseudo_optimizer.zero_grad(set_to_none=True)

    def extra_state(self) -> dict:
        return {"pseudo_optimizer": self.pseudo_optimizer.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.pseudo_optimizer.load_state_dict(state["pseudo_optimizer"])

    # --- generation -------------------------------------------------------------------------------
    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n codes (CPU float32): a component drawn uniformly, then z ~ q(z | u_k); the component
        indices and the noise both come from `generator` (torch's global one when None)."""
        schema.check_value("n", n, int, {"minimum": 0})
        mu_k, logvar_k = (t.detach().float().cpu() for t in self.inference_components())
        k = torch.randint(len(mu_k), (n,), generator=generator)
        eps = torch.randn(n, self.latent_dim, generator=generator)
        return mu_k[k] + torch.exp(0.5 * logvar_k[k]) * eps

    @torch.no_grad()
    def sampling_log_prob(self, z: torch.Tensor, chunk: int = 1000) -> torch.Tensor:
        """log p(z) (n,) in float64 under the mixture generation draws from, in chunks of codes
        (the (n, K, l) terms of all n at once would not fit in memory)."""
        mu_k, logvar_k = (t.detach().double().cpu() for t in self.inference_components())
        z = z.detach().double().cpu()
        return torch.cat([log_mixture_prior(z[i : i + chunk], mu_k, logvar_k) for i in range(0, len(z), chunk)])

    def sampler_tensors(self) -> dict[str, torch.Tensor]:
        """The mixture itself, in the export format of a Gaussian mixture: uniform weights, the
        components' means and diagonal scales."""
        mu_k, logvar_k = (t.detach().float().cpu() for t in self.inference_components())
        return {"weights": torch.full((len(mu_k),), 1 / len(mu_k)), "means": mu_k.clone(),
                "scale_trils": torch.diag_embed(torch.exp(0.5 * logvar_k))}

    def moment_matched(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, covariance) of the VampPrior mixture (float64, CPU), from its components:
        mean = (1/K) Σ μ_k,  cov = (1/K) Σ [diag σ_k² + (μ_k − mean)(μ_k − mean)ᵀ]."""
        mu_k, logvar_k = (t.detach().double().cpu() for t in self.inference_components())
        mean = mu_k.mean(0)
        centred = mu_k - mean
        cov = torch.diag(logvar_k.exp().mean(0)) + centred.T @ centred / len(mu_k)
        return mean, cov

    # The mixture is no Gaussian: the evaluation's latent-fit scores and the ‖z‖² reference use the
    # Gaussian with the mixture's own mean and covariance (moment matching), while `sample_latent`
    # draws from the mixture itself.
    def sampling_gaussian(self):
        mean, cov = self.moment_matched()
        return mean, torch.linalg.cholesky(cov)  # positive definite: every σ_k² > 0

    @property
    def sampling_distribution(self):
        return self.moment_matched()

    @property
    def latent_variance(self):
        mean, cov = self.moment_matched()
        return float(torch.diagonal(cov).mean())
