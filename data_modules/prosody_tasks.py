"""Audio prosody tasks: the words are the same in every class, the class lies only in the sound.

    question     "you are going home"         statement (falling end) vs question (rising end)
    arousal      "there is someone at the door"  calm (low, narrow pitch, slow, soft, breathy)
                                               vs alarmed (high, wide pitch, fast, loud, tense)
    confidence   "yes"                         hesitant (pause first, slow, soft, creaky, rising)
                                               vs confident (prompt, loud, clear fall)

Each example draws a random speaker (pitch, vocal tract, voice quality) and random timing, so
a classifier must read the prosody, not the speaker. `make_example` speaks one with the built-in
synthesizer (data_modules/voice.py); data_modules/espeak.py speaks the same tasks with espeak-ng.

Letters: t samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from ember.data_modules.voice import Prosody, Syllable, random_voice, synthesize
from ember.errors import EmberConfigError
from ember.ops.filterbank import MAX_RATE, MIN_RATE

TaskName = Literal["question", "arousal", "confidence"]  # the keys of TASKS
TaskOrAll = Literal["all", TaskName]  # "all": a random task per example
MAX_SECONDS = 600.0  # the longest utterance: more is a typo, and more samples than memory holds


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _question(label: int, rng: np.random.Generator) -> Prosody:
    end = _u(rng, 1.3, 1.6) if label else _u(rng, 0.7, 0.82)  # the class: a final rise or a final fall
    pitch = ((0.0, _u(rng, 0.95, 1.05)), (0.3, _u(rng, 1.03, 1.12)), (0.75, _u(rng, 0.9, 0.98)), (1.0, end))
    return Prosody(pitch, syllable_s=_u(rng, 0.15, 0.22), loudness=_u(rng, 0.4, 0.6), final_length=1.3)


def _arousal(label: int, rng: np.random.Generator) -> Prosody:
    if label:  # alarmed: high and wide pitch, fast, loud, tense voice
        m = _u(rng, 1.35, 1.6)
        pitch = ((0.0, m), (0.3, m * _u(rng, 1.15, 1.3)), (0.6, m * _u(rng, 0.9, 1.0)), (1.0, m * _u(rng, 1.05, 1.2)))
        return Prosody(pitch, syllable_s=_u(rng, 0.11, 0.15), loudness=_u(rng, 0.6, 0.85), open_quotient=0.4,
                       jitter=0.01, shimmer=0.03)
    m = _u(rng, 0.92, 1.05)  # calm: low, narrow, slow, soft, breathy
    pitch = ((0.0, m), (0.5, m * _u(rng, 1.0, 1.06)), (1.0, m * _u(rng, 0.86, 0.94)))
    return Prosody(pitch, syllable_s=_u(rng, 0.2, 0.26), loudness=_u(rng, 0.25, 0.4), open_quotient=0.7,
                   breath=0.15)


def _confidence(label: int, rng: np.random.Generator) -> Prosody:
    if label:  # confident: prompt, loud, a clear fall
        pitch = ((0.0, _u(rng, 1.15, 1.3)), (1.0, _u(rng, 0.8, 0.9)))
        return Prosody(pitch, syllable_s=_u(rng, 0.22, 0.3), loudness=_u(rng, 0.6, 0.8), open_quotient=0.5,
                       lead_s=_u(rng, 0.0, 0.05))
    pitch = ((0.0, _u(rng, 0.95, 1.02)), (0.6, _u(rng, 0.93, 1.0)), (1.0, _u(rng, 1.05, 1.15)))  # hesitant
    return Prosody(pitch, syllable_s=_u(rng, 0.4, 0.55), loudness=_u(rng, 0.22, 0.35), open_quotient=0.65,
                   lead_s=_u(rng, 0.2, 0.35), jitter=0.015, shimmer=0.06)


@dataclass(frozen=True)
class ProsodyTask:
    """A binary task: one transcript, two ways of saying it."""

    text: str
    classes: tuple[str, str]
    transcript: tuple[Syllable, ...]
    prosody: Callable[[int, np.random.Generator], Prosody]


TASKS: dict[str, ProsodyTask] = {
    "question": ProsodyTask("you are going home", ("statement", "question"),
                            (Syllable("u"), Syllable("a", length=0.6), Syllable("o", "t"), Syllable("i", length=0.6),
                             Syllable("o", "s")), _question),
    "arousal": ProsodyTask("there is someone at the door", ("calm", "alarmed"),
                           (Syllable("e", "s"), Syllable("i", length=0.6), Syllable("a", "s"), Syllable("@"),
                            Syllable("a", length=0.6), Syllable("@", "t", 0.5), Syllable("o", "t")), _arousal),
    "confidence": ProsodyTask("yes", ("hesitant", "confident"),
                              (Syllable("i", length=0.3), Syllable("e", length=1.0)), _confidence),
}


class ProsodyExample(NamedTuple):
    signal: np.ndarray  # (t,) float32 at the sample rate
    label: int  # class index within the task
    task: str


def check_length(seconds: float, sample_rate: int):
    """Refuse an utterance length (0 < seconds <= MAX_SECONDS) or a sample rate (MIN_RATE..MAX_RATE Hz) that no
    utterance can have, naming the fix (NaN and infinity included)."""
    if not 0 < seconds <= MAX_SECONDS or not MIN_RATE <= sample_rate <= MAX_RATE:
        raise EmberConfigError(f"seconds={seconds} must be in (0, {MAX_SECONDS:g}] (one utterance) and sample_rate="
                               f"{sample_rate} in {MIN_RATE}..{MAX_RATE} Hz")


def make_example(rng: np.random.Generator, task: TaskOrAll = "all", seconds: float = 1.5,
                 sample_rate: int = 16000) -> ProsodyExample:
    """One synthesized utterance of `task` (a random task for "all") with a random class and speaker."""
    name = str(rng.choice(sorted(TASKS))) if task == "all" else task
    spec, label = TASKS[name], int(rng.integers(2))
    signal = synthesize(list(spec.transcript), spec.prosody(label, rng), random_voice(rng), rng, sample_rate, seconds)
    return ProsodyExample(signal, label, name)
