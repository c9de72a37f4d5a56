"""Audio prosody tasks: the words are the same in every class, the class lies only in the sound.

    question     "you are going home"         statement (falling end) vs question (rising end)
    arousal      "there is someone at the door"  calm (low, narrow pitch, slow, soft, breathy)
                                               vs alarmed (high, wide pitch, fast, loud, tense)
    confidence   "yes"                         hesitant (pause first, slow, soft, creaky, rising)
                                               vs confident (prompt, loud, clear fall)

Each example draws a random speaker (pitch, vocal tract, voice quality) and random timing, so
a classifier must read the prosody, not the speaker. Example i of a split is a pure function of
(seed, split, i). `ProsodyData` serves them to Lightning (generated on the fly, or read from
shards written by `ember data prepare audio-prosody`); JEPA pre-training reads the same audio
and ignores the labels (task "all" mixes every task).

Letters: b batch, t samples.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from ember.data_modules.splits import SplitLoaders
from ember.data_modules.voice import Prosody, Syllable, random_voice, synthesize
from ember.errors import EmberConfigError

log = logging.getLogger(__name__)
SPLITS = {"train": 0, "val": 1, "test": 2}


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


TASKS = {
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


def make_example(rng: np.random.Generator, task: str = "all", seconds: float = 1.5,
                 sample_rate: int = 16000) -> ProsodyExample:
    """One synthesized utterance of `task` (a random task for "all") with a random class and speaker."""
    name = str(rng.choice(sorted(TASKS))) if task == "all" else task
    spec, label = TASKS[name], int(rng.integers(2))
    signal = synthesize(list(spec.transcript), spec.prosody(label, rng), random_voice(rng), rng, sample_rate, seconds)
    return ProsodyExample(signal, label, name)


def add_noise(signal: np.ndarray, rng: np.random.Generator, snr_db: Optional[tuple[float, float]]) -> np.ndarray:
    """signal plus pink (1/f) background noise at an SNR drawn uniformly from snr_db = (low, high) dB,
    relative to the signal's mean power over the whole clip; unchanged when snr_db is None."""
    if snr_db is None:
        return signal
    spectrum = np.fft.rfft(rng.standard_normal(len(signal)))
    spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))  # power falls as 1/f
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, len(signal))
    snr = rng.uniform(*snr_db)
    power = float(np.mean(signal.astype(np.float64) ** 2))
    noise *= np.sqrt(power / 10 ** (snr / 10) / max(float(np.mean(noise**2)), 1e-20))
    return (signal + noise).astype(np.float32)


def check_snr(snr_db: Optional[tuple[float, float]]) -> Optional[tuple[float, float]]:
    """snr_db as a (low, high) tuple of finite dB values with low <= high, or None; refuses anything else."""
    if snr_db is None:
        return None
    if len(snr_db) != 2 or not all(np.isfinite(snr_db)) or snr_db[0] > snr_db[1]:
        raise EmberConfigError(f"snr_db={list(snr_db)} must be [low, high] in dB with low <= high, e.g. [0, 20], "
                               "or null for clean audio")
    return float(snr_db[0]), float(snr_db[1])


def example_maker(source: str) -> Callable[..., ProsodyExample]:
    """make_example for "synth" (built in), make_espeak_example for "espeak" (needs the espeak-ng binary)."""
    if source == "synth":
        return make_example
    if source == "espeak":
        if shutil.which("espeak-ng") is None:
            raise EmberConfigError("source='espeak' needs the espeak-ng binary: install it (apt-get install "
                                   "espeak-ng) or use source='synth'")
        from ember.data_modules.espeak import make_espeak_example

        return make_espeak_example
    raise EmberConfigError(f"source={source!r} is unknown: use 'synth' or 'espeak'")


def _to_item(example: ProsodyExample) -> dict:
    return {"signal": torch.from_numpy(example.signal), "label": torch.tensor(example.label), "task": example.task}


class SynthesizedProsody(Dataset):
    """`length` examples; example i of a split is make(rng(seed, split, i)) for the source's make."""

    def __init__(self, task: str, split: str, length: int, seed: int, seconds: float, sample_rate: int,
                 source: str = "synth", snr_db: Optional[tuple[float, float]] = None):
        self.task, self.split, self.length, self.seed = task, SPLITS[split], length, seed
        self.seconds, self.sample_rate, self.make = seconds, sample_rate, example_maker(source)
        self.snr_db = check_snr(snr_db)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.split, index])
        example = self.make(rng, self.task, self.seconds, self.sample_rate)
        return _to_item(example._replace(signal=add_noise(example.signal, rng, self.snr_db)))


class StoredProsody(Dataset):
    """Examples read (and checked) from a shard folder's split, held in memory."""

    def __init__(self, folder: Path, split: str, task: str, sample_rate: int, seconds: float):
        from ember.data_modules.audio_shards import read_audio_split

        examples = read_audio_split(folder, split, sample_rate)
        self.examples = [e for e in examples if task in ("all", e.task)]
        self.samples = int(round(seconds * sample_rate))

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        e = self.examples[index]
        signal = np.zeros(self.samples, np.float32)  # pad or crop to the configured length
        signal[: min(self.samples, len(e.signal))] = e.signal[: self.samples]
        return _to_item(ProsodyExample(signal, e.label, e.task))


class ProsodyData(SplitLoaders, LightningDataModule):
    """Prosody utterances (same words, class in the sound) as {"signal", "label", "task"} batches.

    signal (b, t) float32 at sample_rate, label (b,) int64 class within its task, task: list of b names.
    JEPA pre-training ignores the labels.

    Args:
        task: "question", "arousal", "confidence", or "all" (a random task per example).
        path: shard folder written by `ember data prepare audio-prosody`; None synthesizes on the fly.
        source: voice of on-the-fly utterances: "synth" (built-in source-filter synthesizer) or "espeak"
            (the espeak-ng binary, when installed).
        seconds: length of every utterance (stored audio is padded or cropped to it).
        sample_rate: rate the model expects; stored audio at another rate is resampled.
        batch_size: utterances per batch.
        train_size: synthesized training utterances per epoch (ignored with a path).
        val_size: synthesized validation utterances (ignored with a path).
        test_size: synthesized test utterances (ignored with a path).
        seed: seed of every synthesized utterance (splits draw from disjoint streams).
        num_workers: DataLoader worker processes.
        snr_db: [low, high]: pink background noise added to synthesized utterances at an SNR drawn per
            utterance from this range (dB); null: clean.
    """

    def __init__(self, task: str = "all", path: Optional[str] = None, source: str = "synth", seconds: float = 1.5,
                 sample_rate: int = 16000, batch_size: int = 32, train_size: int = 10_000, val_size: int = 256,
                 test_size: int = 512, seed: int = 0, num_workers: int = 0,
                 snr_db: Optional[tuple[float, float]] = None):
        super().__init__()
        if task != "all" and task not in TASKS:
            raise EmberConfigError(f"task={task!r} is unknown: use 'all' or one of {sorted(TASKS)}")
        if batch_size < 1 or min(train_size, val_size, test_size) < 1 or seconds <= 0:
            raise EmberConfigError(f"batch_size={batch_size}, the split sizes and seconds={seconds} must be positive")
        example_maker(source)  # refuses an unknown source, or espeak without its binary, now
        self.task, self.path, self.source, self.seconds, self.sample_rate = task, path, source, seconds, sample_rate
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.snr_db = check_snr(snr_db)
        if self.snr_db is not None and path is not None:
            raise EmberConfigError("snr_db adds noise to synthesized utterances only: drop it or path")

    def dataset(self, split: str) -> Dataset:
        if self.path is None:
            return SynthesizedProsody(self.task, split, self.sizes[split], self.seed, self.seconds, self.sample_rate,
                                      self.source, self.snr_db)
        stored = "val" if split == "test" else split  # shards hold train and val; test reuses val
        return StoredProsody(Path(self.path).expanduser(), stored, self.task, self.sample_rate, self.seconds)

    def _loader(self, split: str) -> DataLoader:
        return DataLoader(self.dataset(split), batch_size=self.batch_size, shuffle=split == "train" and bool(self.path),
                          num_workers=self.num_workers, drop_last=split == "train",
                          persistent_workers=self.num_workers > 0)
