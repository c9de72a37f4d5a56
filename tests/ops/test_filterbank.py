"""ember.ops.filterbank: the fixed mel filterbank in front of the audio encoders; the mel scale and the triangles by
hand."""

import math

import numpy as np
import torch

from ember.ops.filterbank import MelFilterbank, hz_to_mel, mel_matrix, mel_to_hz
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


def test_mel_scale_by_hand_and_its_inverse():
    # HTK: mel(1000 Hz) = 2595 log10(1 + 1000 / 700) = 999.99
    hz = torch.tensor([0.0, 700.0, 1000.0, 8000.0], dtype=torch.float64)
    torch.testing.assert_close(hz_to_mel(hz)[:3], torch.tensor([0.0, 2595.0 * math.log10(2.0), 999.9855],
                                                                dtype=torch.float64), rtol=0, atol=1e-4)
    torch.testing.assert_close(mel_to_hz(hz_to_mel(hz)), hz)


def test_neighbouring_triangles_cross_fade_to_one_between_the_first_and_last_centres():
    """Each filter rises from its left neighbour's centre to 1 at its own and falls to 0 at its right neighbour's,
    both linear in Hz, so between the first and last centres the filters at every bin sum to 1."""
    weights = mel_matrix(16000, 400, 10, 50.0, 8000.0)
    mels = torch.linspace(float(hz_to_mel(torch.tensor(50.0))), float(hz_to_mel(torch.tensor(8000.0))), 12)
    centres = mel_to_hz(mels)[1:-1]
    bins = torch.linspace(0.0, 8000.0, 201)
    inside = (bins >= centres[0]) & (bins <= centres[-1])
    torch.testing.assert_close(weights.sum(0)[inside], torch.ones(int(inside.sum())), rtol=0, atol=1e-5)


def test_a_steady_tone_has_the_same_energy_in_every_frame():
    """|STFT|^2 of a sinusoid does not depend on its phase, which moves by 0.3 of a cycle per 10 ms hop at 1030 Hz:
    the real part alone would beat from frame to frame. Frames near the ends see the zero padding."""
    out = MelFilterbank(bands=40)(torch.from_numpy(tone(1030.0))[None])[0]  # (f, j)
    band = out.mean(0).argmax()
    assert out[5:-5, band].std() < 1e-3 * out[5:-5, band].abs().mean()
