"""The binding test of issue #5 ("Phase 0"): a text question about an utterance whose answer lies only in its sound.

    signal  the utterance (b, t) float32: a ProsodyData example (random speaker, random class)
    text    "there is someone at the door Q: was the speaker calm or alarmed? A: alarmed\\n"

The transcript and the question are the same for every class, so a model that reads only the
text is at chance (1 / classes); the answer bytes are the only scored targets. With a sensory
encoder in the composite the utterance becomes the backbone's prefix, and the answer can be
read from it: the H-module must *use* the L-module's tokens.

Example i of a split is a pure function of (seed, split, i). `label_fraction` keeps only the
first share of the training examples (the few-label regime of the JEPA comparison).

Letters: b batch, t samples, n target positions.
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from ember.data_modules.memory_task import ExampleBuilder
from ember.data_modules.prosody import add_noise, check_snr
from ember.data_modules.prosody_tasks import TASKS, TaskName, make_example
from ember.data_modules.splits import SPLITS, Split
from ember.errors import EmberConfigError

log = logging.getLogger(__name__)
QUESTIONS = {
    "arousal": "was the speaker calm or alarmed?",
    "question": "was it a statement or a question?",
    "confidence": "did the speaker sound hesitant or confident?",
}


class BindingTask:
    """Text of each binding example; names the metrics (`<stage>/binding/acc[/<task>]`) like a MemoryTask.

    Args:
        tasks: prosody tasks mixed in the examples (each example draws one).
        seconds: length of every utterance.
        sample_rate: audio rate.
        snr_db: [low, high] SNR range (dB) of pink background noise added to every utterance; None: clean.
    """

    name = "binding"

    def __init__(self, tasks: tuple[TaskName, ...], seconds: float = 1.5, sample_rate: int = 16000,
                 snr_db: Optional[tuple[float, float]] = None):
        unknown = [t for t in tasks if t not in QUESTIONS]
        if not tasks or unknown:
            raise EmberConfigError(f"tasks={list(tasks)} must be a non-empty list of {sorted(QUESTIONS)}")
        self.tasks, self.seconds, self.sample_rate = list(tasks), seconds, sample_rate
        self.snr_db = check_snr(snr_db)
        self.group_names = list(tasks)
        self.seq_len = max(len(self.text(t, c)) for t in tasks for c in range(2)) - 1  # targets per example

    @staticmethod
    def prompt(task: str) -> bytes:
        """What precedes the answer: transcript and question, the same for every class."""
        return f"{TASKS[task].text} Q: {QUESTIONS[task]} A: ".encode()

    @staticmethod
    def text(task: str, label: int) -> bytes:
        """The whole example text: prompt, answer (the class name), newline."""
        return BindingTask.prompt(task) + TASKS[task].classes[label].encode() + b"\n"

    def chance(self) -> float:
        """Exact-answer accuracy without the sound: one of two equally likely classes."""
        return 1.0 / min(len(TASKS[t].classes) for t in self.tasks)

    def sample(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """One example: tokens (n + 1,), loss_mask/answer_id/group (n,), signal (t,), label ()."""
        group = int(rng.integers(len(self.tasks)))
        utterance = make_example(rng, self.tasks[group], self.seconds, self.sample_rate)
        utterance = utterance._replace(signal=add_noise(utterance.signal, rng, self.snr_db))
        ex = ExampleBuilder()
        ex.add(self.prompt(utterance.task))
        ex.answer(TASKS[utterance.task].classes[utterance.label].encode(), group)
        ex.add(b"\n")
        item = {name: torch.from_numpy(np.asarray(v)) for name, v in ex.build(self.seq_len)._asdict().items()}
        item.update(signal=torch.from_numpy(utterance.signal), label=torch.tensor(utterance.label))
        return item


class BindingExamples(Dataset):
    """`length` examples of a split; example i is task.sample(rng(seed, split, i))."""

    def __init__(self, task: BindingTask, split: Split, length: int, seed: int):
        self.task, self.split, self.length, self.seed = task, SPLITS[split], length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"example {index} of a split of {self.length}")
        return self.task.sample(np.random.default_rng([self.seed, self.split, index]))


class BindingData(LightningDataModule):
    """Utterance + text question about its sound; scored on the answer only (issue #5, Phase 0).

    Batches are dicts: tokens (b, n + 1) int64, loss_mask (b, n) bool, answer_id and group (b, n)
    int64 (group = index of the example's task in `tasks`), signal (b, t) float32, label (b,) int64.
    EmberModel logs val/binding/acc and, under `ember test`, eval/binding/acc (per task too);
    `chance` is the accuracy of a model that cannot hear.

    Args:
        tasks: prosody tasks ("arousal": calm vs alarmed, "question", "confidence"); each example draws one.
        train_size: training examples before label_fraction (the same examples every epoch, shuffled).
        label_fraction: share of the training examples used, in (0, 1]: 0.01 is the few-label regime.
        val_size: validation examples.
        test_size: test examples.
        seconds: length of every utterance.
        sample_rate: audio rate the sensory encoder expects.
        seed: seed of every example (train, val and test draw from disjoint streams).
        batch_size: examples per batch (per device).
        num_workers: DataLoader worker processes.
        snr_db: [low, high]: pink background noise added to every utterance at an SNR drawn per utterance
            from this range (dB); null: clean.
    """

    def __init__(self, tasks: tuple[TaskName, ...] = ("arousal",), train_size: int = 10_000,
                 label_fraction: float = 1.0, val_size: int = 256, test_size: int = 512, seconds: float = 1.5,
                 sample_rate: int = 16000, seed: int = 0, batch_size: int = 32, num_workers: int = 0,
                 snr_db: Optional[tuple[float, float]] = None):
        super().__init__()
        if not 0 < label_fraction <= 1:
            raise EmberConfigError(f"label_fraction={label_fraction} must be in (0, 1]")
        if batch_size < 1 or min(train_size, val_size, test_size) < 1 or seconds <= 0:
            raise EmberConfigError(f"batch_size={batch_size}, the split sizes ({train_size}, {val_size}, "
                                   f"{test_size}) and seconds={seconds} must be positive")
        labelled = int(round(train_size * label_fraction))
        if labelled < batch_size:
            raise EmberConfigError(f"train_size={train_size} x label_fraction={label_fraction} = {labelled} "
                                   f"labelled examples, fewer than batch_size={batch_size}: raise train_size or "
                                   "lower batch_size")
        self.task = BindingTask(tasks, seconds, sample_rate, snr_db)
        self.eval_task = self.task  # read by EmberModel to name its metrics
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.sizes = {"train": labelled, "val": val_size, "test": test_size}
        log.info("binding: %d labelled training examples, chance accuracy %.3f", labelled, self.chance)

    @property
    def chance(self) -> float:
        return self.task.chance()

    def dataset(self, split: Split) -> BindingExamples:
        return BindingExamples(self.task, split, self.sizes[split], self.seed)

    def _loader(self, split: Split, generator: Optional[torch.Generator] = None) -> DataLoader:
        train = split == "train"
        return DataLoader(self.dataset(split), batch_size=self.batch_size, shuffle=train, drop_last=train,
                          generator=generator, num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", torch.Generator().manual_seed(self.seed))

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
