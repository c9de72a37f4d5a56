"""ProsodyData: the audio prosody tasks (data_modules/prosody_tasks.py) served to Lightning.

Utterances are generated on the fly (example i of a split is a pure function of (seed, split, i)),
optionally with background noise, or read from shards written by `ember data prepare audio-prosody`.
JEPA pre-training reads the same audio and ignores the labels (task "all" mixes every task).

Letters: b batch, t samples.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from ember.data_modules.audio_shards import read_audio_split
from ember.data_modules.espeak import Source, example_maker
from ember.data_modules.prosody_tasks import TASKS, ProsodyExample, TaskOrAll, check_length
from ember.data_modules.remote import check_shard_source
from ember.data_modules.splits import SPLITS, Split, SplitLoaders, check_loader_args
from ember.errors import EmberConfigError

log = logging.getLogger(__name__)


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


def _to_item(example: ProsodyExample) -> dict:
    return {"signal": torch.from_numpy(example.signal), "label": torch.tensor(example.label), "task": example.task}


class SynthesizedProsody(Dataset):
    """`length` examples; example i of a split is make(rng(seed, split, i)) for the source's make."""

    def __init__(self, task: TaskOrAll, split: Split, length: int, seed: int, seconds: float, sample_rate: int,
                 source: Source = "synth", snr_db: Optional[tuple[float, float]] = None):
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

    def __init__(self, folder: Path | str, split: Split, task: TaskOrAll, sample_rate: int, seconds: float,
                 val_path: Optional[str] = None):
        examples = read_audio_split(folder, split, sample_rate, val_path)
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
        path: shards written by `ember data prepare audio-prosody`: a folder, a folder URL serving one, or a
            webdataset URL of the train shards (brace pattern or pipe:, data_modules/remote.py, which needs
            val_path); None synthesizes on the fly.
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
        val_path: the val (and test) shards' webdataset URL when path is a brace pattern or pipe:; null otherwise.
    """

    def __init__(self, task: TaskOrAll = "all", path: Optional[str] = None, source: Source = "synth",
                 seconds: float = 1.5, sample_rate: int = 16000, batch_size: int = 32, train_size: int = 10_000,
                 val_size: int = 256, test_size: int = 512, seed: int = 0, num_workers: int = 0,
                 snr_db: Optional[tuple[float, float]] = None, val_path: Optional[str] = None):
        super().__init__()
        if task != "all" and task not in TASKS:
            raise EmberConfigError(f"task={task!r} is unknown: use 'all' or one of {sorted(TASKS)}")
        if batch_size < 1 or min(train_size, val_size, test_size) < 1:
            raise EmberConfigError(f"batch_size={batch_size} and the split sizes must be positive")
        check_loader_args(batch_size, num_workers, seed)
        check_length(seconds, sample_rate)
        example_maker(source)  # refuses an unknown source, or espeak without its binary, now
        check_shard_source(path, val_path)
        self.task, self.path, self.source, self.seconds, self.sample_rate = task, path, source, seconds, sample_rate
        self.val_path = val_path
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.snr_db = check_snr(snr_db)
        if self.snr_db is not None and path is not None:
            raise EmberConfigError("snr_db adds noise to synthesized utterances only: drop it or path")

    def dataset(self, split: Split) -> Dataset:
        if self.path is None:
            return SynthesizedProsody(self.task, split, self.sizes[split], self.seed, self.seconds, self.sample_rate,
                                      self.source, self.snr_db)
        stored = "val" if split == "test" else split  # shards hold train and val; test reuses val
        return StoredProsody(self.path, stored, self.task, self.sample_rate, self.seconds, self.val_path)

    def _loader(self, split: Split) -> DataLoader:
        return DataLoader(self.dataset(split), batch_size=self.batch_size, shuffle=split == "train" and bool(self.path),
                          num_workers=self.num_workers, drop_last=split == "train",
                          persistent_workers=self.num_workers > 0)
