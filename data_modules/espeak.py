"""Optional second voice for the prosody tasks: the espeak-ng formant synthesizer, when it is installed.

The same transcripts as the built-in synthesizer; the class sets espeak-ng's punctuation-driven
intonation (statement "." vs question "?"), pitch, speed and amplitude, and a random voice variant
stands in for the speaker. Nothing is downloaded: without the binary, asking for it is an error.
`example_maker` picks the voice of a source: "synth" (built in) or "espeak".
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from typing import Literal

import numpy as np

from ember.data_modules.audio import check_audio, decode_wav
from ember.data_modules.prosody_tasks import TASKS, ProsodyExample, TaskOrAll, make_example
from ember.errors import EmberConfigError, EmberDataError

Source = Literal["synth", "espeak"]

VARIANTS = ("m1", "m2", "m3", "m4", "f1", "f2", "f3", "f4")
# (punctuation, pitch 0-99, words per minute, amplitude 0-200, leading silence in s) per task and class
STYLES = {
    "question": ((".", 50, 165, 100, 0.0), ("?", 50, 165, 100, 0.0)),
    "arousal": ((".", 35, 135, 70, 0.0), ("!", 85, 230, 170, 0.0)),
    "confidence": (("?", 45, 90, 60, 0.3), (".", 60, 170, 150, 0.0)),
}


def espeak_utterance(text: str, sample_rate: int = 16000, pitch: int = 50, speed: int = 175, amplitude: int = 100,
                     voice: str = "en") -> np.ndarray:
    """espeak-ng speech of `text` as a checked (t,) float32 waveform at sample_rate."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise EmberConfigError("espeak-ng is not installed: install it (apt-get install espeak-ng) or use the "
                               "built-in synthesizer (source: synth)")
    args = [binary, "--stdout", "-v", voice, "-p", str(pitch), "-s", str(speed), "-a", str(amplitude), text]
    try:
        result = subprocess.run(args, capture_output=True, check=True, timeout=60)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        raise EmberDataError(f"espeak-ng failed on {text!r} with voice {voice!r}: {err}") from err
    x, rate = decode_wav(result.stdout, "espeak-ng output")
    return check_audio(x, rate, sample_rate, f"espeak-ng {text!r}")


def make_espeak_example(rng: np.random.Generator, task: TaskOrAll = "all", seconds: float = 1.5,
                        sample_rate: int = 16000) -> ProsodyExample:
    """One espeak-ng utterance of `task` with a random class and voice, padded or cropped to `seconds`."""
    name = str(rng.choice(sorted(TASKS))) if task == "all" else task
    label = int(rng.integers(2))
    mark, pitch, speed, amplitude, lead = STYLES[name][label]
    voice = f"en+{VARIANTS[int(rng.integers(len(VARIANTS)))]}"
    pitch = int(np.clip(pitch + rng.integers(-8, 9), 0, 99))
    speech = espeak_utterance(TASKS[name].text + mark, sample_rate, pitch, speed, amplitude, voice)
    n = int(round(seconds * sample_rate))
    start = min(int((lead + rng.uniform(0.0, 0.1)) * sample_rate), max(0, n - len(speech)))
    signal = np.zeros(n, np.float32)
    piece = speech[: n - start]
    signal[start : start + len(piece)] = piece
    return ProsodyExample(signal + np.float32(3e-4) * rng.standard_normal(n).astype(np.float32), label, name)


def example_maker(source: Source) -> Callable[..., ProsodyExample]:
    """make_example for "synth" (built in), make_espeak_example for "espeak" (needs the espeak-ng binary)."""
    if source == "synth":
        return make_example
    if source == "espeak":
        if shutil.which("espeak-ng") is None:
            raise EmberConfigError("source='espeak' needs the espeak-ng binary: install it (apt-get install "
                                   "espeak-ng) or use source='synth'")
        return make_espeak_example
    raise EmberConfigError(f"source={source!r} is unknown: use 'synth' or 'espeak'")
