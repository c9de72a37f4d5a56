"""Memory benchmarks as data: a `MemoryTask` generates one scored example per seed; `MemoryTaskData`
serves a task to `ember fit/validate/test` (SPEC 4). Nothing is downloaded: every example is a
pure function of (seed, split, index).

An example is a byte (or token) sequence plus, per target position, whether it is scored
(answer bytes only), which answer of the example it belongs to, and a report group (the
delay, the repetition, ...). EmberModel trains on the scored positions only and logs, per
task, exact-answer accuracy and per-byte accuracy, overall and per group.

Letters: b batch, n target positions.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from ember.base import Example, MemoryTask
from ember.data_modules.corpus import builtin_corpus
from ember.data_modules.resumable import ResumableLoader
from ember.data_modules.splits import SPLITS, Split, SplitLoaders, check_loader_args
from ember.errors import EmberConfigError, EmberDataError

log = logging.getLogger(__name__)


class ExampleBuilder:
    """Appends text pieces to an example; answers are the scored pieces."""

    def __init__(self):
        self.tokens: list[int] = []
        self.scored: list[tuple[int, int, int, int]] = []  # (start, stop, answer_id, group) in token positions

    def add(self, data: bytes | list[int]):
        self.tokens.extend(data)

    def answer(self, data: bytes | list[int], group: int):
        start = len(self.tokens)
        self.tokens.extend(data)
        self.scored.append((start, len(self.tokens), len(self.scored), group))

    def __len__(self) -> int:
        return len(self.tokens)

    def build(self, length: int, filler: bytes = b"") -> Example:
        """Pad (with filler, then zeros) or refuse to exceed length + 1 tokens."""
        if len(self.tokens) > length + 1:
            raise EmberConfigError(f"an example needs {len(self.tokens)} tokens but seq_len={length}: raise seq_len")
        tokens = np.zeros(length + 1, dtype=np.int64)
        tokens[: len(self.tokens)] = self.tokens
        pad = np.frombuffer(filler[: length + 1 - len(self.tokens)], dtype=np.uint8)
        tokens[len(self.tokens) : len(self.tokens) + len(pad)] = pad
        mask, answer_id, group = np.zeros(length, bool), np.full(length, -1), np.full(length, -1)
        for start, stop, aid, g in self.scored:  # the token at position t is the target of position t - 1
            mask[start - 1 : stop - 1], answer_id[start - 1 : stop - 1], group[start - 1 : stop - 1] = True, aid, g
        return Example(tokens, mask, answer_id, group)


class TextSource:
    """Distractor text: random slices of a text file, or of the built-in corpus when path is None."""

    def __init__(self, path: Optional[str] = None):
        self.path = path
        self._data: Optional[bytes] = None

    @property
    def data(self) -> bytes:
        if self._data is None:
            if self.path is None:
                self._data = builtin_corpus()
            else:
                file = Path(self.path).expanduser()
                if not file.is_file():
                    raise EmberDataError(f"distractor text {file} is not a file: give a text file, or null for "
                                         "the built-in corpus")
                self._data = file.read_bytes()
        return self._data

    def slice(self, rng: np.random.Generator, length: int) -> bytes:
        """length bytes at a random offset (newlines kept, so it reads like real text)."""
        if len(self.data) <= length:
            raise EmberDataError(f"the distractor text holds {len(self.data)} bytes, fewer than {length} needed")
        start = int(rng.integers(0, len(self.data) - length))
        return self.data[start : start + length]


def example_tensors(ex: Example) -> dict[str, torch.Tensor]:
    """An Example as the dict of tensors a batch is collated from (tokens, loss_mask, answer_id, group)."""
    return {name: torch.from_numpy(np.asarray(value)) for name, value in ex._asdict().items()}


class TaskExamples(Dataset):
    """`length` examples of a task; example i of a split is task.sample(rng(seed, split, i))."""

    def __init__(self, task: MemoryTask, split: Split, length: int, seed: int, context_weight: float = 0.0):
        self.task, self.split, self.length, self.seed = task, split, length, seed
        self.context_weight = context_weight

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:  # plain iteration stops here (every index would sample an example)
            raise IndexError(f"example {index} of {self.length}")
        ex = self.task.sample(np.random.default_rng([self.seed, SPLITS[self.split], index]), self.split)
        item = example_tensors(ex)
        if self.context_weight:  # the loss also reads the other tokens, the answers keep weight 1
            item["loss_weight"] = torch.where(item["loss_mask"], 1.0, self.context_weight)
        return item


class MemoryTaskData(SplitLoaders, LightningDataModule):
    """Serves a generated memory benchmark (recall, procedural patterns, MQAR, ...) for fit and test.

    Batches are dicts: tokens (b, n + 1), loss_mask, answer_id, group (b, n). The model trains
    on the answer bytes only and reports `eval/<task>/acc` (exact answers), `eval/<task>/byte_acc`,
    and each per group, e.g. `eval/recall/acc/4xW`.

    Args:
        task: the generator (class_path: SessionRecall, ProceduralPatterns, MQAR, ForgettingMQAR).
        batch_size: examples per batch (per device).
        train_size: training examples per epoch (fresh ones each index: the set never repeats).
        val_size: validation examples.
        test_size: test examples.
        seed: seed of every example (train, val and test draw from disjoint streams).
        num_workers: DataLoader worker processes.
        also_test: further tasks `ember test` scores beside `task`, test_size examples each, e.g. the
            closed-list SessionRecall beside OpenRecall (eval/recall/... beside eval/open_recall/...).
        context_weight: weight in the training loss of every target that is not an answer byte (the facts,
            the distractor, the questions), the answers keeping 1; 0 trains on the answers only. A session
            repeats names (in the facts, in the questions) as the answers repeat values, so its other bytes
            carry the same copying the memory must learn, many times over. Validation and test losses and
            all scores stay on the answers.
    """

    def __init__(self, task: MemoryTask, batch_size: int = 32, train_size: int = 100_000, val_size: int = 256,
                 test_size: int = 1024, seed: int = 0, num_workers: int = 0,
                 also_test: Optional[list[MemoryTask]] = None, context_weight: float = 0.0):
        super().__init__()
        if batch_size < 1 or min(train_size, val_size, test_size) < 1:
            raise EmberConfigError(f"batch_size={batch_size} and the split sizes ({train_size}, {val_size}, "
                                   f"{test_size}) must be >= 1")
        if not 0 <= context_weight <= 1:
            raise EmberConfigError(f"context_weight={context_weight} must be in [0, 1] (0: answers only)")
        check_loader_args(batch_size, num_workers, seed)
        self.context_weight = context_weight
        self.task, self.batch_size, self.seed, self.num_workers = task, batch_size, seed, num_workers
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.eval_tasks = [task, *(also_test or [])]  # per test loader (read by EmberModel to name its metrics)
        names = [t.name for t in self.eval_tasks]
        if len(set(names)) < len(names):
            raise EmberConfigError(f"also_test repeats a task name ({names}): their metrics would mix")

    def _loader(self, split: Split, task: Optional[MemoryTask] = None) -> ResumableLoader:
        weight = self.context_weight if split == "train" else 0.0
        data = TaskExamples(task or self.task, split, self.sizes[split], self.seed, weight)
        return ResumableLoader(data, batch_size=self.batch_size, num_workers=self.num_workers,
                               drop_last=split == "train", persistent_workers=self.num_workers > 0)

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        if len(self.eval_tasks) == 1:
            return self._loader("test")
        return [self._loader("test", task) for task in self.eval_tasks]
