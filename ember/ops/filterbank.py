"""Cochlear-style front end: a log-compressed mel filterbank with no learned parameters.

    X[f, k] = STFT(x)  (Hann window of n_fft samples, hop samples apart, centred frames)
    M[f, j] = sum_k W[j, k] |X[f, k]|^2    (triangular filters equally spaced on the mel scale)
    y[f, j] = log(M[f, j] + eps)

mel(hz) = 2595 log10(1 + hz / 700) (O'Shaughnessy 1987, the HTK convention). At 16 kHz the
defaults are 25 ms windows every 10 ms, so 1 s of audio gives 101 frames.

Letters: b batch, t samples, f frames, k frequency bins, j mel bands.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ember.errors import EmberConfigError, EmberDataError

MIN_RATE, MAX_RATE = 1000, 384_000  # sample rates (Hz) audio may have; others are a typo or a damaged file header

def hz_to_mel(hz: Tensor) -> Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: Tensor) -> Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_matrix(sample_rate: int, n_fft: int, bands: int, f_min: float, f_max: float) -> Tensor:
    """Triangular filters W: (j, k) with k = n_fft // 2 + 1 bins; each row peaks at 1 on its centre."""
    bins = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)  # (k,)
    edges = mel_to_hz(torch.linspace(hz_to_mel(torch.tensor(f_min)), hz_to_mel(torch.tensor(f_max)), bands + 2,
                                     dtype=torch.float64))  # (j + 2,)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # each (j, 1)
    rising = (bins[None] - lo) / (mid - lo)
    falling = (hi - bins[None]) / (hi - mid)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()  # (j, k)


class MelFilterbank(nn.Module):
    """Waveform (b, t) -> log mel energies (b, f, j); fixed buffers only, nothing is learned.

    Args:
        sample_rate: sampling rate of the input in Hz.
        bands: number of mel bands j.
        window_ms: analysis window length in milliseconds (25 ms = 400 samples at 16 kHz).
        hop_ms: distance between frames in milliseconds (10 ms = 160 samples at 16 kHz).
        f_min: lowest filter edge in Hz.
        f_max: highest filter edge in Hz; None for the Nyquist frequency.
        eps: floor added before the logarithm (silence maps to log(eps)).
    """

    def __init__(self, sample_rate: int = 16000, bands: int = 64, window_ms: float = 25.0, hop_ms: float = 10.0,
                 f_min: float = 50.0, f_max: float | None = None, eps: float = 1e-6):
        super().__init__()
        f_max = sample_rate / 2 if f_max is None else f_max
        if not 0 <= f_min < f_max <= sample_rate / 2:
            raise EmberConfigError(f"mel filterbank needs 0 <= f_min={f_min} < f_max={f_max} <= sample_rate/2="
                                   f"{sample_rate / 2}: lower f_max or raise the sample rate")
        self.sample_rate, self.bands, self.eps = sample_rate, bands, eps
        self.n_fft = int(round(sample_rate * window_ms / 1000))
        self.hop = int(round(sample_rate * hop_ms / 1000))
        if self.hop < 1 or self.n_fft < 2 * self.hop:
            raise EmberConfigError(f"window_ms={window_ms} must be at least twice hop_ms={hop_ms} (and hop >= 1 "
                                   "sample)")
        # non-persistent: rebuilt from the arguments, so checkpoints carry no filterbank tensors
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.register_buffer("weights", mel_matrix(sample_rate, self.n_fft, bands, f_min, f_max), persistent=False)

    def frames(self, samples: int) -> int:
        """Number of frames f for a signal of `samples` samples (centred frames: 1 + t // hop)."""
        return 1 + samples // self.hop

    def forward(self, signal: Tensor) -> Tensor:
        """signal: (b, t) float waveform -> (b, f, j) float log mel energies, f = 1 + t // hop."""
        if signal.dim() != 2:
            raise EmberDataError(f"the filterbank takes a (batch, samples) waveform, got shape {tuple(signal.shape)}: "
                                 "mix channels down to mono and stack utterances along the batch")
        if signal.shape[1] <= self.n_fft // 2:
            raise EmberDataError(f"a signal of {signal.shape[1]} samples is shorter than half a window "
                                 f"({self.n_fft // 2 + 1} samples needed): pad or lengthen the audio")
        with torch.autocast(signal.device.type, enabled=False):  # float32 even under mixed precision
            spec = torch.stft(signal.float(), self.n_fft, self.hop, window=self.window, center=True,
                              return_complex=True)  # (b, k, f)
            power = spec.real.square() + spec.imag.square()
            mel = torch.einsum("jk,bkf->bfj", self.weights, power)  # (b, f, j)
            return torch.log(mel + self.eps)

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, bands={self.bands}, n_fft={self.n_fft}, hop={self.hop} "
                f"({1000 * self.hop / self.sample_rate:.3g} ms)")

