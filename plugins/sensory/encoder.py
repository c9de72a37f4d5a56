"""Audio encoders (SPEC 3.4): 16 kHz waveform -> mel filterbank -> leaky-neuron patch tokens -> token mixers.

    SpikingAudioEncoder   leaky integrate-and-fire neurons, surrogate gradients
    RateAudioEncoder      the same network with non-spiking (sigmoid-rate) neurons, same parameters

Both return SensoryOutput(tokens (b, s, d_model), modulation (b, 3)): the modulation heads read
the mean token and emit arousal in [0, 1], valence in [-1, 1] and threat in [0, 1]. The JEPA
objective does not train these heads; a downstream task (or the composite model) does.

Letters: b batch, t samples, f frames, s patches (tokens), d width.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Optional

import torch
from torch import Tensor, nn

from ember.base import SensoryEncoder, SensoryOutput, SensoryRequest
from ember.errors import EmberConfigError
from ember.ops.audio_blocks import PatchEmbed, SpikingBlock, standardise
from ember.ops.filterbank import MAX_RATE, MIN_RATE, MelFilterbank
from ember.ops.lif import LIFNeuron, RateNeuron
from ember.ops.stack import MAX_LAYERS

MODULATION = ("arousal", "valence", "threat")


class AudioEncoder(SensoryEncoder):
    """Waveform -> tokens + modulation; subclasses choose the neuron (spiking or rate).

    A token covers `patch` filterbank frames (patch * hop_ms of audio): 1 s at the defaults gives
    101 frames and 25 tokens.

    Args:
        d_model: token width d (the width the composite's reasoning core and backbone read).
        depth: residual token-mixer blocks.
        heads: attention heads per block (d_model must be divisible by heads).
        bands: mel bands of the filterbank.
        patch: filterbank frames per token.
        channels: neurons per frame in the patch embedding.
        hidden: neurons of each block's feed-forward layer; None for 2 * d_model.
        beta: initial membrane leak in (0, 1) (learned per neuron).
        slope: steepness of the surrogate gradient (spiking) or of the rate sigmoid (non-spiking).
        sample_rate: expected input rate in Hz (the data modules resample or refuse other rates).
        hop_ms: filterbank frame hop in milliseconds.
    """

    def __init__(self, d_model: int = 64, depth: int = 2, heads: int = 4, bands: int = 64, patch: int = 4,
                 channels: int = 16, hidden: Optional[int] = None, beta: float = 0.9, slope: float = 5.0,
                 sample_rate: int = 16000, hop_ms: float = 10.0):
        super().__init__()
        if min(d_model, heads, bands) < 1 or (hidden is not None and hidden < 1):
            raise EmberConfigError(f"d_model={d_model}, heads={heads}, bands={bands} and hidden={hidden} must be >= 1 "
                                   "(hidden null: 2 * d_model)")
        if d_model % heads:
            raise EmberConfigError(f"d_model={d_model} is not divisible by heads={heads}")
        if min(depth, patch, channels) < 1 or depth > MAX_LAYERS:
            raise EmberConfigError(f"depth={depth} (at most {MAX_LAYERS}), patch={patch} and channels={channels} must "
                                   "be >= 1")
        if not 0 < beta < 1 or not 0 < slope < math.inf or not 0 < hop_ms < math.inf:
            raise EmberConfigError(f"beta={beta} must be in (0, 1), slope={slope} and hop_ms={hop_ms} finite and > 0")
        if not MIN_RATE <= sample_rate <= MAX_RATE:
            raise EmberConfigError(f"sample_rate={sample_rate} must be an audio rate, {MIN_RATE}..{MAX_RATE} Hz")
        self.d_model, self.sample_rate = d_model, sample_rate
        self.beta, self.slope = beta, slope
        hidden = hidden or 2 * d_model
        self.filterbank = MelFilterbank(sample_rate, bands, hop_ms=hop_ms)
        self.embed_patches = PatchEmbed(bands, patch, channels, d_model, self.make_neuron(channels))
        self.blocks = nn.ModuleList(SpikingBlock(d_model, heads, hidden, self.make_neuron(hidden))
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(d_model)
        self.modulation_head = nn.Linear(d_model, len(MODULATION))

    @abstractmethod
    def make_neuron(self, channels: int) -> nn.Module:
        """A (..., n, c) -> (..., n, c) neuron layer with `channels` channels."""

    def embed(self, signal: Tensor, bands: tuple[float, float] = (0.0, 1.0)) -> Tensor:
        """signal: (b, t) float waveform at sample_rate -> patch tokens (b, s, d) with positions; `bands` keeps that
        share of the mel bands (low to high) and silences the others."""
        return self.embed_patches(keep_bands(standardise(self.filterbank(signal)), bands))

    def encode(self, tokens: Tensor) -> Tensor:
        """tokens: (b, s, d) patch tokens (all, or the visible ones in time order) -> (b, s, d) embeddings."""
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def modulate(self, tokens: Tensor) -> Tensor:
        """tokens: (b, s, d) -> (b, 3): arousal in [0, 1], valence in [-1, 1], threat in [0, 1]."""
        raw = self.modulation_head(tokens.mean(dim=1))  # (b, 3)
        arousal, valence, threat = raw.unbind(-1)
        return torch.stack((torch.sigmoid(arousal), torch.tanh(valence), torch.sigmoid(threat)), dim=-1)

    def forward(self, signal: Tensor) -> SensoryOutput:
        """signal: (b, t) float waveform at sample_rate -> SensoryOutput(tokens (b, s, d), modulation (b, 3))."""
        tokens = self.encode(self.embed(signal))
        return SensoryOutput(tokens, self.modulate(tokens))

    def sense(self, signal: Tensor, request: SensoryRequest) -> SensoryOutput:
        """The view `request` asks for: its time window of `signal` (b, t), its share of the mel bands."""
        tokens = self.encode(self.embed(window(signal, request, self.sample_rate), request.bands))
        return SensoryOutput(tokens, self.modulate(tokens))

    def spike_rate(self) -> Tensor:
        """Mean output of every neuron layer in the last forward (spikes per neuron per step), a scalar."""
        rates = [m.last_rate for m in self.modules() if isinstance(m, (LIFNeuron, RateNeuron))
                 and m.last_rate is not None]
        return torch.stack(rates).mean() if rates else torch.tensor(float("nan"))


def window(signal: Tensor, request: SensoryRequest, sample_rate: int) -> Tensor:
    """The samples of `signal` (b, t) inside the request's time window [start, start + seconds)."""
    length = signal.shape[1] / sample_rate
    stop = length if request.seconds is None else request.start + request.seconds
    if not 0 <= request.start < stop <= length + 1e-9:
        raise EmberConfigError(f"the request for {request.start:g}..{stop:g} s lies outside the {length:g} s signal: "
                               "lower model.init_args.max_rounds or view_seconds, or give longer signals")
    return signal[:, round(request.start * sample_rate):round(stop * sample_rate)]


def keep_bands(frames: Tensor, bands: tuple[float, float]) -> Tensor:
    """frames (b, f, j) with the mel bands outside the share `bands` = (low, high) of the j bands set to zero."""
    low, high = bands
    j = frames.shape[-1]
    first, last = round(low * j), round(high * j)
    if not 0 <= first < last <= j:
        raise EmberConfigError(f"bands={tuple(bands)} must be shares 0 <= low < high <= 1 of the {j} mel bands, "
                               "keeping at least one")
    if (first, last) == (0, j):
        return frames
    keep = torch.zeros(j, dtype=frames.dtype, device=frames.device)
    keep[first:last] = 1
    return frames * keep


class SpikingAudioEncoder(AudioEncoder):
    """Spiking audio encoder: leaky integrate-and-fire neurons trained with surrogate gradients.

    Takes the arguments of AudioEncoder.
    """

    def make_neuron(self, channels: int) -> nn.Module:
        return LIFNeuron(channels, beta=self.beta, slope=self.slope)


class RateAudioEncoder(AudioEncoder):
    """Non-spiking twin of SpikingAudioEncoder for ablations: same layers and parameter count, sigmoid-rate neurons.

    Takes the arguments of AudioEncoder.
    """

    def make_neuron(self, channels: int) -> nn.Module:
        return RateNeuron(channels, beta=self.beta, slope=self.slope)
