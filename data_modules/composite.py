"""The composite task (issue 32): a spoken session in which the senses, the reasoning core and the memories are each
needed, generated offline.

    signal  `windows` windows of `view_seconds`, each a harmonic tone whose pitch codes a digit 0..digits-1, in pink
            noise; the whole signal is calm (steady) or alarmed (a fast tremolo, brighter): the session's arousal
    text    "first tone? 2\\nTavo Rimel's code is KT-5081. Brasi Kon's code is MW-2210.\\n<distractor of delay x W
             bytes>\\nQ: Brasi Kon's code? A: MW-2210\\n"

Two questions per session, scored on their answers, each in a report group:
    first            "first tone?": the first window's digit (decidable from the first view)
    sum              "tone sum?": the digits' sum modulo `digits` (needs every window: a later view)
The tone question comes first, right after the sensory prefix, so that its answer lies within the working-memory
window of the prefix tokens (a question after the distractor would test the memories' hold on sound, not hearing).
    recall_calm      "<name>'s code?" in a calm session: the value said before the distractor (memory)
    recall_alarmed   the same in an alarmed session

The names and codes are open-vocabulary (data_modules/vocab.py) with disjoint train/val/test shares, so recall is
memory, not classification. Nulling the sensory slot leaves the tone questions at chance (1 / digits); the sum needs
the second window (active perception, max_rounds 2, or one whole view); the recall needs a memory that holds a value
past the working-memory window. Example i of a split is a pure function of (seed, split, i).

Letters: b batch, t samples, n target positions.
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from ember.data_modules.memory_task import ExampleBuilder, TextSource
from ember.data_modules.prosody import add_noise, check_snr
from ember.data_modules.prosody_tasks import check_length
from ember.data_modules.recall import OPEN_ATTRIBUTES, OpenRecall
from ember.data_modules.splits import SPLITS, Split, SplitLoaders
from ember.errors import EmberConfigError

log = logging.getLogger(__name__)
GROUPS = ("first", "sum", "recall_calm", "recall_alarmed")
BASE_HZ = 180.0  # pitch of digit 0; each digit a major third (4 semitones) higher


def tone(digit: int, seconds: float, sample_rate: int, alarmed: bool, rng: np.random.Generator) -> np.ndarray:
    """One window: a harmonic tone at digit's pitch with a random level and soft edges; alarmed adds a 9-12 Hz
    tremolo and brighter harmonics. (t,) float32."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    f0 = BASE_HZ * 2 ** (4 * digit / 12) * rng.uniform(0.985, 1.015)
    brightness = 0.8 if alarmed else 0.45
    wave = sum(brightness ** (h - 1) * np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 2 * np.pi)) for h in range(1, 6))
    if alarmed:
        wave *= 1.0 - 0.9 * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(9, 12) * t))
    edge = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02)  # 20 ms ramps: no clicks between windows
    return (rng.uniform(0.3, 0.8) * wave * edge / 3).astype(np.float32)


class CompositeTask:
    """The composite task's examples; names the metrics (`<stage>/composite/acc[/<group>]`) like a MemoryTask.

    Args:
        windows: tone windows per signal (2: "sum" needs the second view).
        view_seconds: length of each window (the composite's view_seconds).
        digits: pitch-coded digits 0..digits-1 (chance on the tone questions: 1 / digits).
        people: facts per session ("<name>'s code is <value>."); one is asked.
        window: the working-memory window W of the model under test, in bytes.
        delay: distractor length in multiples of W between the facts and the questions.
        seq_len: tokens per example.
        sample_rate: audio rate.
        snr_db: [low, high] SNR range (dB) of pink background noise; None: clean.
        alarmed_share: share of alarmed sessions.
        distractor: text file of distractor text; null for the built-in corpus.
    """

    name = "composite"
    group_names = list(GROUPS)

    def __init__(self, windows: int = 2, view_seconds: float = 0.5, digits: int = 4, people: int = 2,
                 window: int = 64, delay: int = 2, seq_len: int = 320, sample_rate: int = 16000,
                 snr_db: Optional[tuple[float, float]] = (10.0, 30.0), alarmed_share: float = 0.5,
                 distractor: Optional[str] = None):
        check_length(windows * view_seconds, sample_rate)
        if windows < 2 or not 2 <= digits <= 8 or people < 1 or window < 1 or delay < 0:
            raise EmberConfigError(f"windows={windows} must be >= 2 (the sum needs a later view), digits={digits} in "
                                   f"2..8, people={people} and window={window} >= 1, delay={delay} >= 0")
        if not 0 <= alarmed_share <= 1:
            raise EmberConfigError(f"alarmed_share={alarmed_share} is a share: use a value in [0, 1]")
        self.windows, self.view_seconds, self.digits, self.people = windows, view_seconds, digits, people
        self.window, self.delay, self.seq_len, self.sample_rate = window, delay, seq_len, sample_rate
        self.snr_db, self.alarmed_share, self.text = check_snr(snr_db), alarmed_share, TextSource(distractor)
        need = self.longest_text()
        if need > seq_len + 1:
            raise EmberConfigError(f"seq_len={seq_len} cannot hold {people} facts, a {delay}xW={delay * window}-byte "
                                   f"distractor and the questions ({need} bytes): raise seq_len to {need - 1}, or use "
                                   "fewer people or a shorter delay")

    def longest_text(self) -> int:
        """Bytes of the longest session text (a bound: the longest names and codes the vocabularies draw)."""
        fact = 2 * 24 + len("'s code is . ") + len("Q: 's code? A: \n")
        return self.people * fact + self.delay * self.window + 2 + len("first tone? 0\n") + 2

    def chance(self) -> float:
        """Exact-answer accuracy without the sound or the session: the tone questions at 1 / digits, recall 0."""
        return 0.5 / self.digits

    def sample(self, rng: np.random.Generator, split: Split = "train") -> dict[str, torch.Tensor]:
        """One example: tokens (n + 1,), loss_mask/answer_id/group (n,), signal (t,), alarmed () bool."""
        digits = rng.integers(self.digits, size=self.windows)
        alarmed = bool(rng.random() < self.alarmed_share)
        signal = np.concatenate([tone(int(d), self.view_seconds, self.sample_rate, alarmed, rng) for d in digits])
        signal = add_noise(signal, rng, self.snr_db)
        names = [f"{a} {b}" for a, b in zip(OpenRecall.NAME.draw(rng, split, self.people),
                                            OpenRecall.NAME.draw(rng, split, self.people))]
        codes = OPEN_ATTRIBUTES["code"].draw(rng, split, self.people)
        ex = ExampleBuilder()
        tone_group = int(rng.integers(2))  # 0 first, 1 sum
        ex.add(b"first tone? " if tone_group == 0 else b"tone sum? ")
        answer = int(digits[0]) if tone_group == 0 else int(digits.sum()) % self.digits
        ex.answer(str(answer).encode(), tone_group)
        ex.add(b"\n" + " ".join(f"{n}'s code is {c}." for n, c in zip(names, codes)).encode() + b"\n")
        ex.add(self.text.slice(rng, self.delay * self.window))
        ex.add(b"\n")
        asked = int(rng.integers(self.people))
        ex.add(f"Q: {names[asked]}'s code? A: ".encode())
        ex.answer(codes[asked].encode(), 3 if alarmed else 2)
        ex.add(b"\n")
        built = ex.build(self.seq_len, filler=self.text.slice(rng, self.seq_len + 1))
        item = {k: torch.from_numpy(np.asarray(v)) for k, v in built._asdict().items()}
        item.update(signal=torch.from_numpy(signal), alarmed=torch.tensor(alarmed))
        return item


class CompositeExamples(Dataset):
    """`length` examples of a split; example i is task.sample(rng(seed, split, i), split)."""

    def __init__(self, task: CompositeTask, split: Split, length: int, seed: int):
        self.task, self.split, self.length, self.seed = task, split, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"example {index} of a split of {self.length}")
        return self.task.sample(np.random.default_rng([self.seed, SPLITS[self.split], index]), self.split)


class CompositeData(SplitLoaders, LightningDataModule):
    """The composite task (see the module docstring) for `ember fit` / `ember test` of the full composite.

    Batches are dicts: tokens (b, n + 1) int64, loss_mask (b, n) bool, answer_id and group (b, n) int64, signal
    (b, t) float32, alarmed (b,) bool. EmberModel logs val/composite/acc and, under `ember test`,
    eval/composite/acc per group (first, sum, recall_calm, recall_alarmed) and <stage>/rounds with active perception.

    Args:
        windows, view_seconds, digits, people, window, delay, seq_len, sample_rate, snr_db, alarmed_share,
            distractor: the task's (CompositeTask).
        train_size: training examples (the same every epoch, shuffled).
        val_size: validation examples.
        test_size: test examples.
        seed: seed of every example (train, val and test draw from disjoint streams and vocabulary shares).
        batch_size: examples per batch (per device).
        num_workers: DataLoader worker processes.
    """

    def __init__(self, windows: int = 2, view_seconds: float = 0.5, digits: int = 4, people: int = 2,
                 window: int = 64, delay: int = 2, seq_len: int = 320, sample_rate: int = 16000,
                 snr_db: Optional[tuple[float, float]] = (10.0, 30.0), alarmed_share: float = 0.5,
                 distractor: Optional[str] = None, train_size: int = 20_000, val_size: int = 128,
                 test_size: int = 512, seed: int = 0, batch_size: int = 16, num_workers: int = 0):
        super().__init__()
        if batch_size < 1 or min(train_size, val_size, test_size) < 1 or num_workers < 0:
            raise EmberConfigError(f"batch_size={batch_size} and the split sizes ({train_size}, {val_size}, "
                                   f"{test_size}) must be >= 1, num_workers={num_workers} >= 0")
        if train_size < batch_size:
            raise EmberConfigError(f"train_size={train_size} is smaller than batch_size={batch_size}: raise it")
        self.task = CompositeTask(windows, view_seconds, digits, people, window, delay, seq_len, sample_rate, snr_db,
                                  alarmed_share, distractor)
        self.eval_task = self.task  # read by EmberModel to name its metrics
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}

    @property
    def chance(self) -> float:
        return self.task.chance()

    def dataset(self, split: Split) -> CompositeExamples:
        return CompositeExamples(self.task, split, self.sizes[split], self.seed)

    def _loader(self, split: Split) -> DataLoader:
        train = split == "train"
        return DataLoader(self.dataset(split), batch_size=self.batch_size, shuffle=train, drop_last=train,
                          generator=torch.Generator().manual_seed(self.seed) if train else None,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)
