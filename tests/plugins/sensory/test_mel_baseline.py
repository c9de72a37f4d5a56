"""MelBaselineEncoder: the no-neuron baseline of the binding test."""

import torch

from ember.plugins.sensory.encoder import SpikingAudioEncoder
from ember.plugins.sensory.mel_baseline import MelBaselineEncoder
from helpers import SMALL_AUDIO_ENCODER as SMALL


def test_mel_baseline_has_no_neurons_and_the_encoders_shapes():
    signal = torch.randn(2, 4000)
    mel = MelBaselineEncoder(**SMALL)
    tokens, modulation = mel(signal)
    assert tokens.shape == (2, 6, 32) and modulation.shape == (2, 3)
    assert torch.isnan(mel.spike_rate())  # no spikes, no leaky neurons
    spiking = SpikingAudioEncoder(**SMALL)
    spiking(signal)
    assert 0 <= float(spiking.spike_rate()) <= 1
