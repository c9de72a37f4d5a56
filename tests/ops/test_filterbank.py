"""ember.ops.filterbank: the fixed mel filterbank in front of the audio encoders."""

import math

import numpy as np
import torch

from ember.ops.filterbank import MelFilterbank
from helpers import SR, tone


def test_filterbank_frames_every_10ms_and_learns_nothing():
    fb = MelFilterbank(bands=40)
    out = fb(torch.randn(2, SR))
    assert fb.hop == 160 and fb.n_fft == 400
    assert out.shape == (2, 101, 40) == (2, fb.frames(SR), 40)
    assert list(fb.parameters()) == [] and fb.state_dict() == {}


def test_filterbank_puts_a_tone_in_its_band_and_silence_at_the_floor():
    fb = MelFilterbank(bands=40)
    out = fb(torch.from_numpy(np.stack([tone(1000.0), np.zeros(SR, np.float32)])))
    centres = (fb.weights * torch.linspace(0, SR / 2, fb.n_fft // 2 + 1)).sum(1) / fb.weights.sum(1)
    assert abs(centres[out[0].mean(0).argmax()] - 1000.0) < 150.0
    assert torch.allclose(out[1], torch.full_like(out[1], math.log(fb.eps)))
