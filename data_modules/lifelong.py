"""Lifelong recall (SPEC 3.7): days of open-vocabulary sessions, and quizzes on the facts of earlier days asked
after the sessions' memory state is gone, so only what sleep moved into the slow weights can answer.

    day 1, session 1:  Tavo Rimel's phone is 48271093. ... <distractor> ... Q: Tavo Rimel's phone? A: 48271093
    quiz of day 1:     Q: Tavo Rimel's phone? A: 48271093          (no facts before it: a fresh memory)
"""

from __future__ import annotations

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import Dataset

from ember.base import Example, MemoryTask, Split
from ember.data_modules.memory_task import ExampleBuilder, example_tensors
from ember.data_modules.recall import OpenRecall
from ember.data_modules.resumable import ResumableLoader
from ember.errors import EmberConfigError

SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


class LifelongWorld(MemoryTask):
    """The sessions of `days` days (`sessions_per_day` each) and their quizzes, all fixed by `seed`.

    A session is an `OpenRecall` session (3 people x 2 facts by default, a distractor, then one question per fact,
    answerable from the session with the memories on). Its quiz asks the same questions with nothing before them.
    Names and values come from the generators' `split` share: "test" (the default) are never seen in training.
    Quiz groups are the days ("day1", ...), so a quiz's accuracy is reported per day of the facts.

    Args:
        recall: the session generator (OpenRecall).
        days: number of days.
        sessions_per_day: sessions a day.
        quiz_len: tokens per quiz example.
        split: the generators' share the facts come from.
        seed: seed of the world.
    """

    name = "lifelong"

    def __init__(self, recall: OpenRecall, days: int = 10, sessions_per_day: int = 8, quiz_len: int = 256,
                 split: Split = "test", seed: int = 0):
        if days < 1 or sessions_per_day < 1:
            raise EmberConfigError(f"days={days} and sessions_per_day={sessions_per_day} must be >= 1")
        self.recall, self.days, self.sessions_per_day, self.split = recall, days, sessions_per_day, split
        self.seq_len, self.quiz_len, self.seed = recall.seq_len, quiz_len, seed
        self.group_names = [f"day{d + 1}" for d in range(days)]
        longest = max(self._quiz_builder(d, k).__len__() for d in range(days) for k in range(sessions_per_day))
        if longest > quiz_len + 1:
            raise EmberConfigError(f"quiz_len={quiz_len} cannot hold a session's questions ({longest} bytes): raise "
                                   f"quiz_len to {longest - 1}")

    def _rng(self, day: int, k: int, part: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, SPLIT_IDS[self.split], day, k, part])

    def facts(self, day: int, k: int) -> list[tuple[str, str, str]]:
        """The (name, attribute, value) facts of session k of day `day` (0-based)."""
        room = self.recall.seq_len - 1 - max(self.recall.delays) * self.recall.window - 2
        rng = self._rng(day, k, 0)
        for _ in range(100):
            facts = self.recall.facts(rng, self.split)
            if self.recall.fact_bytes(facts) <= room:
                return facts
        raise EmberConfigError(f"seq_len={self.recall.seq_len} is too short for these sessions: raise it")

    def session(self, day: int, k: int) -> Example:
        """Session k of day `day`: its facts, a distractor (the delays cycle over the sessions), its questions."""
        return self.recall.session(self._rng(day, k, 1), self.facts(day, k), k % len(self.recall.delays))

    def _quiz_builder(self, day: int, k: int) -> ExampleBuilder:
        ex, rng = ExampleBuilder(), self._rng(day, k, 2)
        facts = self.facts(day, k)
        for i in rng.permutation(len(facts)):
            name, attr, value = facts[i]
            ex.add(f"Q: {name}'s {attr}? A: ".encode())
            ex.answer(value.encode(), day)
            ex.add(b"\n")
        return ex

    def quiz(self, day: int, k: int) -> Example:
        """The questions of session k of day `day` alone (group: the day), padded with newlines."""
        return self._quiz_builder(day, k).build(self.quiz_len, filler=b"\n" * (self.quiz_len + 1))

    def sample(self, rng: np.random.Generator, split: Split = "train") -> Example:
        """A quiz of a random day and session (what `ember plugins` and generic samplers see)."""
        return self.quiz(int(rng.integers(self.days)), int(rng.integers(self.sessions_per_day)))

    def chance(self) -> float:
        return 0.0


class _Items(Dataset):
    def __init__(self, length: int, make):
        self.length, self.make = length, make

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"example {index} of {self.length}")
        return example_tensors(self.make(index))


class LifelongData(LightningDataModule):
    """Days of open-vocabulary sessions to train on, and quizzes on every day's facts to validate and test on.

    For `ember fit` with `SleepConsolidation(every_n_steps=steps_per_day)`; the quizzes report
    eval/lifelong/acc/day<d>, answered by the slow weights alone (a quiz starts from empty memories and holds no
    facts).

    Training step s serves day min(s // steps_per_day, days - 1): `batch_size` of its sessions (cycling). The days'
    own training steps also change the slow weights (keep model.init_args.lr small so the sleeps do the moving);
    benchmarks/sleep_lifelong.py lives the days with the slow weights frozen, as a deployed model does.

    Args:
        world: the days and quizzes (LifelongWorld).
        steps_per_day: training steps per day.
        batch_size: sessions per step.
    """

    def __init__(self, world: LifelongWorld, steps_per_day: int = 10, batch_size: int = 8):
        super().__init__()
        if steps_per_day < 1 or batch_size < 1:
            raise EmberConfigError(f"steps_per_day={steps_per_day} and batch_size={batch_size} must be >= 1")
        self.world, self.steps_per_day, self.batch_size = world, steps_per_day, batch_size
        self.eval_tasks = [world]

    def _session(self, index: int) -> Example:
        day = min(index // (self.batch_size * self.steps_per_day), self.world.days - 1)
        return self.world.session(day, index % self.world.sessions_per_day)

    def _quiz(self, index: int) -> Example:
        return self.world.quiz(index // self.world.sessions_per_day, index % self.world.sessions_per_day)

    def train_dataloader(self) -> ResumableLoader:
        steps = self.steps_per_day * self.world.days
        return ResumableLoader(_Items(steps * self.batch_size, self._session), batch_size=self.batch_size,
                               drop_last=True)

    def val_dataloader(self) -> ResumableLoader:
        return ResumableLoader(_Items(self.world.days * self.world.sessions_per_day, self._quiz),
                               batch_size=self.batch_size)

    def test_dataloader(self) -> ResumableLoader:
        return self.val_dataloader()
