"""MelBaselineEncoder: the plain mel-spectrogram encoder of the binding test (issue #5, variant c).

    waveform -> mel filterbank -> patch MLP (GELU) -> transformer blocks (GELU feed-forward) -> tokens

No spikes, no leaky neurons, no JEPA: the layers of the audio encoders (PatchEmbed, SpikingBlock)
with a memoryless GELU where they have neurons, so the binding test compares the neuron alone.
RateAudioEncoder is *not* this baseline: its rate neurons still integrate over time with a leak.

Letters: b batch, t samples, s patches (tokens), d width.
"""

from __future__ import annotations

from typing import Optional

from torch import nn

from ember.plugins.sensory.encoder import AudioEncoder


class MelBaselineEncoder(AudioEncoder):
    """Non-spiking mel-spectrogram baseline: patch MLP + transformer blocks, GELU activations, no neuron state.

    Returns SensoryOutput(tokens (b, s, d_model), modulation (b, 3)) like the spiking encoder; its
    spike_rate() is nan (it has no neurons).

    Args:
        d_model: token width d (the width the composite's backbone reads).
        depth: transformer blocks.
        heads: attention heads per block (d_model must be divisible by heads).
        bands: mel bands of the filterbank.
        patch: filterbank frames per token.
        channels: hidden units per frame in the patch MLP.
        hidden: feed-forward width of each block; None for 2 * d_model.
        sample_rate: expected input rate in Hz.
        hop_ms: filterbank frame hop in milliseconds.
    """

    def __init__(self, d_model: int = 64, depth: int = 2, heads: int = 4, bands: int = 64, patch: int = 4,
                 channels: int = 16, hidden: Optional[int] = None, sample_rate: int = 16000, hop_ms: float = 10.0):
        super().__init__(d_model=d_model, depth=depth, heads=heads, bands=bands, patch=patch, channels=channels,
                         hidden=hidden, sample_rate=sample_rate, hop_ms=hop_ms)

    def make_neuron(self, channels: int) -> nn.Module:
        return nn.GELU()
