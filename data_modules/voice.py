"""A source-filter voice synthesizer (Fant 1960): glottal pulses through formant resonators.

    source   e[n]: Rosenberg (1971) glottal pulses, differentiated (lip radiation), one per period;
                   each period T_i = 1 / f0(t_i) * (1 + jitter * N(0,1)), each amplitude
                   A_i = A(t_i) * (1 + shimmer * N(0,1)); breathiness adds aspiration noise
    tract    H(z) = prod_k G_k / (1 - 2 r_k cos(w_k) z^-1 + r_k^2 z^-2),  r_k = exp(-pi B_k / fs),
                   w_k = 2 pi F_k / fs, G_k = 1 - 2 r_k cos(w_k) + r_k^2 (unit gain at 0 Hz)
    output   y[n] = sum_i win_i[n] (h_i * e)[n] + consonant noise + a faint noise floor

A syllable i has its own vowel formants F_k; its filter's output is faded in and out with a
window win_i (the windows sum to 1), so the formants glide between syllables. The resonators'
impulse responses are closed-form, h_k[n] = G_k r_k^n sin((n + 1) w_k) / sin(w_k), truncated where
r_k^n < 1e-4, and applied by FFT convolution. Everything is a pure function of the numpy
Generator passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Peterson & Barney (1952) adult male averages (F1, F2, F3) in Hz; "@" is a neutral schwa.
VOWELS = {"a": (730, 1090, 2440), "e": (530, 1840, 2480), "i": (270, 2290, 3010), "o": (570, 840, 2410),
          "u": (300, 870, 2240), "@": (500, 1500, 2500)}
BANDWIDTHS = (80.0, 110.0, 160.0)
GAIN = 0.5  # output scale: a loudness-0.5 voice peaks near 0.3-0.5


@dataclass(frozen=True)
class Syllable:
    """A vowel nucleus with an optional onset: "" none, "s" fricative noise, "t" stop (closure + burst)."""

    vowel: str
    onset: str = ""
    length: float = 1.0  # relative duration


@dataclass(frozen=True)
class Voice:
    """A speaker: base pitch, vocal-tract scale and voice-quality baseline."""

    f0: float = 120.0  # Hz
    tract: float = 1.0  # formant scale (shorter tract -> higher formants)
    jitter: float = 0.005
    shimmer: float = 0.03
    breath: float = 0.05


@dataclass(frozen=True)
class Prosody:
    """How an utterance is spoken: pitch contour, rate, loudness and voice quality.

    pitch: knots (fraction of the utterance in [0, 1], f0 multiple of the speaker's f0), linearly interpolated.
    """

    pitch: tuple[tuple[float, float], ...] = ((0.0, 1.0), (1.0, 0.85))
    syllable_s: float = 0.2  # seconds per syllable of length 1
    loudness: float = 0.5  # peak-ish amplitude of the voiced source
    open_quotient: float = 0.6  # glottal open phase / period: low = tense, bright; high = lax, breathy
    breath: float = 0.0  # extra aspiration noise on top of the speaker's
    jitter: float = 0.0  # extra period jitter
    shimmer: float = 0.0  # extra amplitude shimmer
    lead_s: float = 0.0  # silence before the utterance (e.g. a hesitation)
    final_length: float = 1.0  # lengthening of the last syllable


def random_voice(rng: np.random.Generator) -> Voice:
    """A random speaker: f0 90-230 Hz (log-uniform), tract scale tied loosely to f0, random voice quality."""
    f0 = float(np.exp(rng.uniform(np.log(90.0), np.log(230.0))))
    tract = float(np.clip(0.85 + 0.3 * (np.log(f0 / 90.0) / np.log(230.0 / 90.0)) + rng.normal(0, 0.04), 0.8, 1.25))
    return Voice(f0, tract, float(rng.uniform(0.002, 0.01)), float(rng.uniform(0.02, 0.06)),
                 float(rng.uniform(0.0, 0.15)))


def resonator_response(freq: float, bandwidth: float, sample_rate: int) -> np.ndarray:
    """Impulse response of one unit-DC-gain two-pole resonator, truncated where it has decayed to 1e-4."""
    r, w = np.exp(-np.pi * bandwidth / sample_rate), 2 * np.pi * freq / sample_rate
    n = np.arange(int(np.ceil(np.log(1e-4) / np.log(r))))
    gain = 1.0 - 2.0 * r * np.cos(w) + r * r
    return gain * r**n * np.sin((n + 1) * w) / np.sin(w)


def fft_convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Linear convolution of x (n,) with h (m,), truncated to n samples."""
    size = 1 << int(np.ceil(np.log2(len(x) + len(h) - 1)))
    return np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[: len(x)]


def vowel_filter(vowel: str, tract: float, sample_rate: int) -> np.ndarray:
    """Impulse response of the three-formant cascade of a vowel for a tract scale."""
    h = np.array([1.0])
    for freq, bw in zip(VOWELS[vowel], BANDWIDTHS):
        h = np.convolve(h, resonator_response(min(freq * tract, 0.45 * sample_rate), bw, sample_rate))
    return h


def glottal_source(f0: np.ndarray, amp: np.ndarray, open_quotient: float, jitter: float, shimmer: float,
                   rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Differentiated Rosenberg pulses, one per jittered period, where amp > 0. f0, amp: (n,) -> (n,)."""
    out = np.zeros(len(f0) + 1)
    t = 0
    while t < len(f0):
        if amp[t] <= 0:
            t += 1
            continue
        period = max(2, int(round(sample_rate / f0[t] * (1.0 + jitter * rng.standard_normal()))))
        opening = max(1, int(0.7 * open_quotient * period))
        closing = max(1, int(0.3 * open_quotient * period))
        pulse = np.concatenate((0.5 * (1 - np.cos(np.pi * np.arange(opening) / opening)),
                                np.cos(0.5 * np.pi * np.arange(closing) / closing)))
        a = amp[t] * max(0.0, 1.0 + shimmer * rng.standard_normal())
        stop = min(len(f0), t + len(pulse))
        out[t:stop] += a * pulse[: stop - t]
        t += period
    return np.diff(out) * 4.0  # lip radiation ~ differentiation; x4 keeps the level near the pulse amplitude


def _timeline(syllables: list[Syllable], prosody: Prosody, rng: np.random.Generator, sample_rate: int,
              start: int, budget: int) -> list[tuple[int, int, int, Syllable]]:
    """(onset start, vowel start, vowel end, syllable) in samples from `start`, squeezed into `budget` samples."""
    lengths = np.array([s.length for s in syllables]) * rng.uniform(0.85, 1.15, len(syllables))
    lengths[-1] *= prosody.final_length
    durations = lengths * prosody.syllable_s
    onsets = np.array([0.06 if s.onset else 0.0 for s in syllables])
    total = prosody.lead_s + durations.sum() + onsets.sum()
    scale = min(1.0, budget / sample_rate / total) * sample_rate
    t, out = start + prosody.lead_s * scale, []
    for syllable, d, o in zip(syllables, durations * scale, onsets * scale):
        out.append((int(t), int(t + o), int(t + o + d), syllable))
        t += o + d
    return out


def _consonant(kind: str, length: int, rng: np.random.Generator) -> np.ndarray:
    """Noise for an onset: a fricative hiss, or a stop's silent closure then a short burst."""
    noise = np.diff(rng.standard_normal(length + 1))  # differentiated white noise: a high-frequency hiss
    if kind == "s":
        return 0.08 * noise * np.hanning(length)
    burst = length // 4
    return np.concatenate((np.zeros(length - burst), 0.2 * noise[:burst] * np.hanning(burst)))


def _pitch(prosody: Prosody, voice: Voice, first: int, last: int, n: int, rng: np.random.Generator,
           sample_rate: int) -> np.ndarray:
    """f0 (n,) in Hz: the prosody's contour over the voiced span [first, last), wandering by ~2%."""
    knots_t, knots_f = zip(*prosody.pitch)
    frac = np.clip((np.arange(n) - first) / max(1, last - first), 0.0, 1.0)
    t = np.arange(n) / sample_rate
    wander = 1.0 + 0.02 * np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 2 * np.pi))
    return voice.f0 * np.interp(frac, knots_t, knots_f) * wander


def _vowel_window(n: int, v0: int, v1: int, sample_rate: int) -> np.ndarray:
    """(n,) weight of one vowel: 1 inside [v0, v1) with 20 ms raised-cosine ramps, 0 elsewhere."""
    v1 = min(v1, n)
    ramp = max(1, min(int(0.02 * sample_rate), (v1 - v0) // 3))
    edge = np.hanning(2 * ramp)
    w = np.zeros(n)
    w[v0:v1] = np.concatenate((edge[:ramp], np.ones(v1 - v0 - 2 * ramp), edge[ramp:]))
    return w


def synthesize(syllables: list[Syllable], prosody: Prosody, voice: Voice, rng: np.random.Generator,
               sample_rate: int = 16000, seconds: float = 1.5) -> np.ndarray:
    """One utterance as a (round(seconds * sample_rate),) float32 waveform in [-1, 1]."""
    n = int(round(seconds * sample_rate))
    start = int(rng.uniform(0.0, 0.1) * sample_rate)
    plan = _timeline(syllables, prosody, rng, sample_rate, start, int(0.95 * n) - start)
    f0 = _pitch(prosody, voice, plan[0][1], plan[-1][2], n, rng, sample_rate)
    weights = [_vowel_window(n, v0, v1, sample_rate) for _, v0, v1, _ in plan]
    amp = prosody.loudness * np.sum(weights, axis=0)
    source = glottal_source(f0, amp, prosody.open_quotient, voice.jitter + prosody.jitter,
                            voice.shimmer + prosody.shimmer, rng, sample_rate)
    source += 0.5 * (voice.breath + prosody.breath) * amp * rng.standard_normal(n)
    y = np.zeros(n)
    for w, (c0, v0, _, syllable) in zip(weights, plan):
        y += w * fft_convolve(source, vowel_filter(syllable.vowel, voice.tract, sample_rate))
        if syllable.onset and v0 > c0:
            y[c0:v0] += _consonant(syllable.onset, v0 - c0, rng)
    y = GAIN * y
    y = y / max(1.0, np.abs(y).max() / 0.95)  # never clip: only scale down the rare loud draw
    return (y + 3e-4 * rng.standard_normal(n)).astype(np.float32)
