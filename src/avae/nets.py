"""Encoders and decoders of the paper (E Tables VIII–IX), with a width factor for CPU runs.

The paper's networks take 32×32 (`mnist`, `cifar10`) or 64×64 images (`celeba`, `disentangle`).
For other sides S (any multiple of 4 from 16 to 256) a network keeps its layers from the input
side and gains one stride-2 stage per doubling of S over its own size, or loses one per halving
(round(log2(S / own size)) stages; an added stage repeats the widest channel count, a removed one
is the widest). Where S / 2^stages is not whole, stages are removed until the decoder's first
side is (28 = 7·2²: two stages, 7×7 after the dense layer, 128 channels for `mnist`).

Every decoder returns raw outputs (pre-activation); the likelihood turns them into images.
Kernels are 4×4; stride-2 convolutions halve and stride-2 transposed convolutions double the
size. Initialisation follows the authors' code: He-normal convolutions, Glorot dense layers,
zero biases; BatchNorm uses Keras' momentum 0.99 (PyTorch 0.01) and eps 1e-3.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .errors import AvaeError


@dataclass(frozen=True)
class Arch:
    """One row of the paper's architecture tables."""

    image_size: int
    encoder_channels: tuple[int, ...]  # stride-2 convolutions
    decoder_start: int  # spatial size after the decoder's dense layer
    decoder_channels: tuple[int, ...]  # stride-2 transposed convolutions before the output layer
    final_stride: int  # output layer: stride 2 (doubles) or 1 (TF 'same')
    batch_norm: bool
    hidden: int = 0  # extra dense layer of the disentanglement nets
    shift_input: bool = True  # the authors' encoders map [0,1] inputs to [−1,1]


ARCHS = {
    "mnist": Arch(32, (64, 128, 256, 512), 2, (512, 256, 128, 64), 2, True),
    "cifar10": Arch(32, (128, 256, 512, 1024), 8, (1024, 512, 256), 1, True),
    "celeba": Arch(64, (64, 128, 256, 512), 8, (512, 256, 128, 64), 1, True),
    "disentangle": Arch(64, (32, 32, 64, 64), 4, (64, 64, 32, 32), 2, False, hidden=256, shift_input=False),
}


MIN_SIDE, MAX_SIDE, SIDE_STEP = 16, 256, 4  # the image sides the networks are built for


def supported_side(side: int) -> bool:
    return MIN_SIDE <= side <= MAX_SIDE and side % SIDE_STEP == 0


def nearest_side(side: int) -> int:
    """The supported side closest to `side` (ties go up)."""
    return min(max(SIDE_STEP * math.floor(side / SIDE_STEP + 0.5), MIN_SIDE), MAX_SIDE)


SIDES = f"a multiple of {SIDE_STEP} from {MIN_SIDE} to {MAX_SIDE}"


def default_arch(shape: tuple[int, int, int], has_factors: bool = False) -> str:
    """The paper's network for an image shape (C, H, W): its 32×32 networks up to 45 pixels, its 64×64 ones above."""
    c, h, w = shape
    if h != w or not supported_side(h):
        raise AvaeError(f"no network for images of shape {shape}; the networks take square images with a side of {SIDES}")
    if h < 32 * math.sqrt(2):
        return "mnist" if c == 1 else "cifar10"
    return "disentangle" if has_factors or c == 1 else "celeba"


def decoder_doublings(arch: Arch) -> int:
    """Stride-2 stages of the decoder (transposed convolutions, the output layer included)."""
    return len(arch.decoder_channels) - 1 + (arch.final_stride == 2)


def for_side(arch: Arch, side: int) -> Arch:
    """The network `arch` with stride-2 stages added or removed so that it takes side×side images."""
    if side == arch.image_size:
        return arch
    doublings = decoder_doublings(arch)
    wanted = doublings + round(math.log2(side / arch.image_size))
    whole = (side & -side).bit_length() - 1  # how often side halves without a remainder
    change = max(1, min(wanted, whole)) - doublings
    if change >= 0:
        encoder = arch.encoder_channels + arch.encoder_channels[-1:] * change
        decoder = arch.decoder_channels[:1] * change + arch.decoder_channels
    else:
        encoder, decoder = arch.encoder_channels[:change], arch.decoder_channels[-change:]  # the widest go
    start = side >> (doublings + change)
    return dataclasses.replace(arch, image_size=side, encoder_channels=encoder, decoder_start=start,
                               decoder_channels=decoder)


def _scaled(channels, width):
    return tuple(max(1, int(round(c * width))) for c in channels)


class Encoder(nn.Module):
    def __init__(self, arch: Arch, in_channels: int, out_dim: int, width: float = 1.0, value_range=(0.0, 1.0)):
        super().__init__()
        self.shift = arch.shift_input and tuple(value_range) == (0.0, 1.0)
        layers, c = [], in_channels
        for out in _scaled(arch.encoder_channels, width):
            layers += [nn.Conv2d(c, out, 4, 2, 1), *_norm(out, arch.batch_norm), nn.ReLU()]
            c = out
        side = arch.image_size // 2 ** len(arch.encoder_channels)
        layers.append(nn.Flatten())
        flat = c * side * side
        if arch.hidden:
            hidden = _scaled((arch.hidden,), width)[0]
            layers += [nn.Linear(flat, hidden), nn.ReLU()]
            flat = hidden
        layers.append(nn.Linear(flat, out_dim))
        self.net = nn.Sequential(*layers)
        _init(self.net)

    def forward(self, x):
        return self.net(x * 2 - 1 if self.shift else x)


@torch.no_grad()
def inference_encoder(encoder: nn.Module) -> nn.Module:
    """A frozen copy of `encoder` for inference: in the paper's encoders each BatchNorm (on its
    running statistics) is folded into the convolution before it, so the copy gives the eval-mode
    encoder's codes with one layer fewer per block (a user's encoder is copied as it is). Cheap
    enough to make anew whenever the weights have changed."""
    frozen = copy.deepcopy(encoder).eval().requires_grad_(False)
    if not isinstance(frozen, Encoder):
        return frozen
    layers = []
    for layer in frozen.net:
        if isinstance(layer, nn.BatchNorm2d):
            layers[-1] = _fold(layers[-1], layer)
        else:
            layers.append(layer)
    frozen.net = nn.Sequential(*layers)
    return frozen


def _fold(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> nn.Conv2d:
    fused = fuse_conv_bn_eval(conv, norm)
    # keep the convolution's memory layout (channels-last or not), which the fusion may change
    fused.weight = nn.Parameter(torch.empty_like(conv.weight).copy_(fused.weight), requires_grad=False)
    return fused


class Decoder(nn.Module):
    def __init__(self, arch: Arch, latent_dim: int, out_channels: int, width: float = 1.0):
        super().__init__()
        chans = _scaled(arch.decoder_channels, width)
        side = arch.decoder_start
        dense = []
        if arch.hidden:
            hidden = _scaled((arch.hidden,), width)[0]
            dense += [nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, chans[0] * side * side), nn.ReLU()]
        else:
            dense += [nn.Linear(latent_dim, chans[0] * side * side)]
        layers = [*dense, nn.Unflatten(1, (chans[0], side, side))]
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), *_norm(c_out, arch.batch_norm), nn.ReLU()]
        if arch.final_stride == 2:
            layers.append(nn.ConvTranspose2d(chans[-1], out_channels, 4, 2, 1))
        else:
            layers.append(SameConv(chans[-1], out_channels))
        self.net = nn.Sequential(*layers)
        _init(self.net)
        last = self.net[-1].conv if isinstance(self.net[-1], SameConv) else self.net[-1]
        nn.init.xavier_uniform_(last.weight)  # the authors' output layer keeps Keras' default init

    def forward(self, z):
        return self.net(z)


class SameConv(nn.Module):
    """Stride-1 4×4 layer with TF 'same' padding (1 before, 2 after), the paper's last layer."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 4, 1, 0)

    def forward(self, x):
        return self.conv(F.pad(x, (1, 2, 1, 2)))


def _norm(channels, enabled):
    return [nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)] if enabled else []


def _init(module):
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


def build(arch_name: str, shape, latent_dim: int, encoder_outputs: int, width: float, value_range):
    """(encoder, decoder) for images of `shape`; the encoder emits `encoder_outputs` numbers."""
    if arch_name not in ARCHS:
        raise AvaeError(f"unknown network '{arch_name}'; choose one of: {', '.join(ARCHS)}")
    c, h, w = shape
    if h != w or not supported_side(h):
        raise AvaeError(f"network '{arch_name}' takes square images with a side of {SIDES}, the data are {h}×{w}")
    arch = for_side(ARCHS[arch_name], h)
    if width <= 0:
        raise AvaeError(f"model.width must be positive, got {width}")
    return Encoder(arch, c, encoder_outputs, width, value_range), Decoder(arch, latent_dim, c, width)
