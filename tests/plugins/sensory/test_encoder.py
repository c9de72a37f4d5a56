"""SpikingAudioEncoder and RateAudioEncoder: tokens and modulation, equal sizes, shape checks."""

import math

import pytest
import torch

from ember.base import SensoryOutput
from ember.errors import EmberConfigError, EmberDataError
from ember.plugins.sensory.encoder import RateAudioEncoder, SpikingAudioEncoder
from helpers import SR
from helpers import TINY_AUDIO_ENCODER as TINY


@pytest.mark.parametrize("cls", [SpikingAudioEncoder, RateAudioEncoder])
def test_encoder_outputs_tokens_and_modulation(cls):
    enc = cls(**TINY)
    out = enc(torch.randn(3, SR) * 0.1)
    assert isinstance(out, SensoryOutput)
    assert out.tokens.shape == (3, 101 // 4, 32)
    assert out.modulation.shape == (3, 3)
    assert 0.0 <= float(enc.spike_rate()) <= 1.0


def test_modulation_is_arousal_valence_threat_squashed_by_hand():
    """Raw head outputs 2, -0.5, -1 (constant head): arousal sigmoid(2), valence tanh(-0.5), threat sigmoid(-1)."""
    enc = SpikingAudioEncoder(**TINY)
    with torch.no_grad():
        enc.modulation_head.weight.zero_()
        enc.modulation_head.bias.copy_(torch.tensor([2.0, -0.5, -1.0]))
    want = torch.tensor([1 / (1 + math.exp(-2.0)), math.tanh(-0.5), 1 / (1 + math.exp(1.0))])
    torch.testing.assert_close(enc.modulate(torch.randn(2, 5, 32)), want.expand(2, 3))


def test_spiking_and_rate_encoders_have_the_same_parameter_count():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(SpikingAudioEncoder(**TINY)) == count(RateAudioEncoder(**TINY))


def test_encoder_validates_its_shapes():
    with pytest.raises(EmberConfigError, match="divisible"):
        SpikingAudioEncoder(d_model=30, heads=4)
    with pytest.raises(EmberDataError, match="batch, samples"):
        SpikingAudioEncoder(**TINY)(torch.randn(2, 2, SR))
