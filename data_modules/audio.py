"""Audio in and out: 16-bit WAV bytes, band-limited resampling, and checks that reject bad audio clearly.

`check_audio` is the one gate every waveform passes before training: NaN/inf, empty or silent
audio is refused with an EmberDataError; another sample rate is resampled (or refused when
resampling is off); clipping is flagged with a warning (it is still usable audio).
"""

from __future__ import annotations

import io
import logging
import wave
from pathlib import Path

import numpy as np

from ember.errors import EmberDataError
from ember.ops.filterbank import MAX_RATE, MIN_RATE

log = logging.getLogger(__name__)
SILENCE_PEAK = 1e-4  # peak amplitude below which a waveform counts as silent
CLIP_LEVEL = 0.999  # |x| at or above this counts as a clipped sample
CLIP_FRACTION = 0.001  # share of clipped samples above which a waveform is flagged


def resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Band-limited resampling by truncating or zero-padding the spectrum (exact for periodic signals).

    x: (t,) float -> (round(t * dst / src),) float32. Downsampling drops everything above dst / 2.
    """
    if src == dst:
        return x.astype(np.float32, copy=False)
    n_out = max(1, int(round(len(x) * dst / src)))
    spectrum = np.fft.rfft(x.astype(np.float64))
    bins = n_out // 2 + 1
    kept = np.zeros(bins, dtype=np.complex128)
    kept[: min(bins, len(spectrum))] = spectrum[:bins]
    return (np.fft.irfft(kept, n=n_out) * (n_out / len(x))).astype(np.float32)


def check_audio(x, sample_rate: int, expected_rate: int = 16000, name: str = "audio",
                allow_resample: bool = True) -> np.ndarray:
    """Validate a mono waveform and bring it to expected_rate; returns (t,) float32.

    Raises EmberDataError for NaN/inf, empty, multi-dimensional or silent audio, and for another
    rate when allow_resample is False. Logs a warning for clipped audio.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise EmberDataError(f"{name}: expected a mono waveform (samples,), got shape {x.shape}: mix the channels "
                             "down (mean over channels) first")
    if x.size == 0:
        raise EmberDataError(f"{name} holds no samples: drop it from the data set")
    if not np.isfinite(x).all():
        raise EmberDataError(f"{name} holds {int((~np.isfinite(x)).sum())} NaN/inf samples: regenerate or drop it")
    peak = float(np.abs(x).max())
    if peak < SILENCE_PEAK:
        raise EmberDataError(f"{name} is silent (peak {peak:.2e} < {SILENCE_PEAK}): drop it, or check the gain")
    clipped = float((np.abs(x) >= CLIP_LEVEL).mean())
    if clipped > CLIP_FRACTION:
        log.warning("%s is clipped: %.2f%% of its samples reach full scale; lower the recording gain",
                    name, 100 * clipped)
    if sample_rate != expected_rate:
        if not allow_resample:
            raise EmberDataError(f"{name} is sampled at {sample_rate} Hz, the encoder expects {expected_rate} Hz: "
                                 f"resample it (e.g. `sox in.wav -r {expected_rate} out.wav`) or allow resampling")
        log.info("%s: resampling %d Hz -> %d Hz", name, sample_rate, expected_rate)
        x = resample(x, sample_rate, expected_rate)
    return x


def encode_wav(x: np.ndarray, sample_rate: int) -> bytes:
    """(t,) float waveform in [-1, 1] -> mono 16-bit PCM WAV bytes (values beyond full scale are clipped)."""
    pcm = (np.clip(x, -1.0, 1.0) * 32767.0).round().astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def decode_wav(data: bytes, name: str = "audio") -> tuple[np.ndarray, int]:
    """WAV bytes (8/16/32-bit PCM, any channels) -> ((t,) float32 mono in [-1, 1], sample rate)."""
    try:
        with wave.open(io.BytesIO(data), "rb") as src:
            channels, width, rate = src.getnchannels(), src.getsampwidth(), src.getframerate()
            frames = src.readframes(src.getnframes())
    except (wave.Error, EOFError, RuntimeError) as err:  # RuntimeError: wave's seek past a chunk of damaged size
        reason = str(err) or "a chunk runs past the end of the file"
        raise EmberDataError(f"{name} is not a PCM WAV file ({reason}): convert it, e.g. `sox in.mp3 -b 16 out.wav`") \
            from err
    dtypes = {1: np.uint8, 2: np.dtype("<i2"), 4: np.dtype("<i4")}
    if width not in dtypes:
        raise EmberDataError(f"{name} has {8 * width}-bit samples: convert it to 16-bit PCM WAV")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise EmberDataError(f"{name} says it is sampled at {rate} Hz, not an audio rate ({MIN_RATE}-{MAX_RATE} Hz): "
                             "the file is damaged, or convert it, e.g. `sox in.wav -r 16000 out.wav`")
    frames = frames[: len(frames) // (width * channels) * width * channels]  # a truncated file: whole frames only
    x = np.frombuffer(frames, dtype=dtypes[width]).astype(np.float32)
    x = (x - 128.0) / 128.0 if width == 1 else x / float(2 ** (8 * width - 1))
    return x.reshape(-1, channels).mean(axis=1), rate


def read_audio(path: str | Path, expected_rate: int = 16000, allow_resample: bool = True) -> np.ndarray:
    """A checked (t,) float32 waveform at expected_rate from a WAV file."""
    path = Path(path)
    if not path.is_file():
        raise EmberDataError(f"audio file {path} does not exist")
    x, rate = decode_wav(path.read_bytes(), str(path))
    return check_audio(x, rate, expected_rate, str(path), allow_resample)
