"""Your own encoder and decoder in a config: importable classes named `module:Class`, with keyword
arguments beside the name.

    model:
      encoder: {class: "mynets:Encoder", hidden: 256}
      decoder: {class: "mynets:Decoder", hidden: 256}

The classes are called as Encoder(shape=(C, H, W), out_dim=k·l, **kwargs) and
Decoder(shape=(C, H, W), latent_dim=l, **kwargs); the encoder maps float images (B, C, H, W) in the
data's value range to (B, k·l) (k = 2 for Gaussian encoders: mean, then log-variance), and the
decoder maps codes (B, l) to raw outputs (B, C, H, W) that the likelihood turns into images
(sigmoid, or tanh for [−1, 1] data). Everything else — the loop, run directory, resume, figures,
evaluation — is the same as with the built-in networks.
"""
from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass

import torch
from torch import nn

from .errors import AvaeError


@dataclass(frozen=True)
class UserNetworks:
    encoder: dict  # {"class": "module:Class", **keyword arguments}
    decoder: dict

    @classmethod
    def from_config(cls, encoder, decoder) -> "UserNetworks":
        if encoder is None or decoder is None:
            raise AvaeError("give both model.encoder and model.decoder (each {class: module:Class, ...}), or neither")
        return cls(_spec(encoder, "encoder"), _spec(decoder, "decoder"))

    def build(self, shape: tuple[int, int, int], latent_dim: int, encoder_outputs: int) -> tuple[nn.Module, nn.Module]:
        encoder = _instance(self.encoder, "encoder", shape=tuple(shape), out_dim=encoder_outputs)
        decoder = _instance(self.decoder, "decoder", shape=tuple(shape), latent_dim=latent_dim)
        _check_shapes(encoder, decoder, tuple(shape), latent_dim, encoder_outputs)
        return encoder, decoder


def _spec(value, key: str) -> dict:
    if isinstance(value, str):
        value = {"class": value}
    if not isinstance(value, dict) or not isinstance(value.get("class"), str) or ":" not in value["class"]:
        raise AvaeError(f"model.{key} must be {{class: module:Class, ...keyword arguments}}, got {value!r}")
    return dict(value)


def import_class(path: str, key: str) -> type:
    """The class named 'module:Class' (the current folder is importable, as for `python -m`)."""
    module_name, _, class_name = path.partition(":")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
        raise AvaeError(f"model.{key} class '{path}' cannot be imported ({e}); check the module is on PYTHONPATH") from None
    if not (isinstance(found, type) and issubclass(found, nn.Module)):
        raise AvaeError(f"model.{key} '{path}' is not a torch.nn.Module class")
    return found


def _instance(spec: dict, key: str, **required) -> nn.Module:
    kwargs = {k: v for k, v in spec.items() if k != "class"}
    try:
        return import_class(spec["class"], key)(**required, **kwargs)
    except TypeError as e:
        raise AvaeError(f"model.{key} '{spec['class']}' does not take ({', '.join([*required, *kwargs])}): {e}") from None


@torch.no_grad()
def _check_shapes(encoder, decoder, shape, latent_dim, encoder_outputs) -> None:
    """One forward pass of two blank images, in eval mode, so a mismatch is reported before training."""
    encoder.eval(), decoder.eval()
    try:
        codes = encoder(torch.zeros(2, *shape))
        images = decoder(torch.zeros(2, latent_dim))
    finally:
        encoder.train(), decoder.train()
    if tuple(codes.shape) != (2, encoder_outputs):
        raise AvaeError(f"model.encoder returns {tuple(codes.shape)[1:]} per image; it must return ({encoder_outputs},)")
    if tuple(images.shape) != (2, *shape):
        raise AvaeError(f"model.decoder returns {tuple(images.shape)[1:]} per code; it must return {tuple(shape)}")
