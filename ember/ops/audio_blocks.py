"""Layers of the audio encoder: filterbank frames -> patch tokens -> residual token mixers.

The neurons are passed in (LIFNeuron for the spiking encoder, RateNeuron for its twin), so
both encoders share every line here and differ only in what a neuron emits.

Letters: b batch, f frames, j mel bands, p frames per patch, s patches (tokens), c neuron
channels, d width.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from ember.errors import EmberDataError
from ember.ops.positions import sinusoid


def standardise(frames: Tensor, eps: float = 1e-5) -> Tensor:
    """Per-utterance gain normalisation of log energies: (y - mean) / std over all frames and bands.

    frames: (b, f, j) -> (b, f, j). Removes the recording gain, keeps the relative energy of frames
    and bands (loudness contours, spectral tilt) that carry prosody.
    """
    mean = frames.mean(dim=(1, 2), keepdim=True)
    std = frames.std(dim=(1, 2), keepdim=True)
    return (frames - mean) / (std + eps)


class PatchEmbed(nn.Module):
    """Frames (b, f, j) -> tokens (b, s, d): neurons run over the p frames of each patch, from rest.

        u = W_in y            (b, s, p, c)   currents from each frame's mel energies
        o = neuron(u)         (b, s, p, c)   spikes (or rates) over the patch's p frames
        e = W_out [o_1..o_p] + P[s]          (b, s, d)

    Each patch starts with its membranes at rest, so a token depends on its own 10 ms frames
    only: masking a patch in JEPA hides everything it carries. Trailing frames that do not fill
    a patch are dropped.

    Args:
        bands: mel bands j per frame.
        patch: frames p per token.
        channels: neurons c per frame.
        d_model: token width d.
        neuron: (..., p, c) -> (..., p, c) module (LIFNeuron or RateNeuron with c channels).
    """

    def __init__(self, bands: int, patch: int, channels: int, d_model: int, neuron: nn.Module):
        super().__init__()
        self.patch = patch
        self.inp = nn.Linear(bands, channels)
        self.neuron = neuron
        self.out = nn.Linear(patch * channels, d_model)

    def forward(self, frames: Tensor) -> Tensor:
        """frames: (b, f, j) float -> (b, s, d) with s = f // p, sinusoidal positions added."""
        s = frames.shape[1] // self.patch
        if s < 1:
            raise EmberDataError(f"{frames.shape[1]} frames make no patch of {self.patch} frames: use longer audio "
                                 "(at least patch * 10 ms) or a smaller patch")
        y = rearrange(frames[:, : s * self.patch], "b (s p) j -> b s p j", p=self.patch)
        o = self.neuron(self.inp(y))  # (b, s, p, c)
        e = self.out(rearrange(o, "b s p c -> b s (p c)"))  # (b, s, d)
        return e + sinusoid(torch.arange(s, device=e.device), e.shape[-1]).to(e.dtype)


class SpikingBlock(nn.Module):
    """Residual token mixer: attention across tokens, then a feed-forward layer of leaky neurons.

        x <- x + Attn(LN(x))
        x <- x + W_2 neuron(W_1 LN(x))     (the neurons integrate over the tokens in time order)

    Args:
        d_model: token width d.
        heads: attention heads (d_model must be divisible by heads).
        hidden: neuron channels c of the feed-forward layer.
        neuron: (b, s, c) -> (b, s, c) module with c channels.
    """

    def __init__(self, d_model: int, heads: int, hidden: int, neuron: nn.Module):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, heads, batch_first=True)
        self.up, self.neuron, self.down = nn.Linear(d_model, hidden), neuron, nn.Linear(hidden, d_model)

    def forward(self, x: Tensor) -> Tensor:
        """x: (b, s, d) -> (b, s, d)."""
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.down(self.neuron(self.up(self.norm2(x))))
