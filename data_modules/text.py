"""TextBytes: byte-level language-modelling data from the built-in corpus, text files, or shards.

Letters: b batch, n sequence length.
"""

from __future__ import annotations

import logging
import math
from typing import Optional

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from ember.base import MemoryTask
from ember.data_modules.corpus import builtin_corpus, read_text_files
from ember.data_modules.memory_task import TaskExamples
from ember.data_modules.remote import BAD_SHARDS, check_shard_source, is_url, local_or_url
from ember.data_modules.resumable import ResumableLoader, pass_position
from ember.data_modules.shard_manifest import MANIFEST, shard_splits
from ember.data_modules.shards import ShardWindows, read_shard_bytes
from ember.data_modules.splits import check_loader_args
from ember.errors import EmberConfigError, EmberDataError

log = logging.getLogger(__name__)


class RandomWindows(Dataset):
    """`length` windows of n+1 bytes at offsets drawn from a generator seeded by (seed, index).

    Map-style and deterministic per index, so Lightning's DistributedSampler splits it by rank
    and DataLoader workers need no coordination.
    """

    def __init__(self, data: torch.Tensor, window: int, length: int, seed: int):
        if data.numel() <= window:
            raise EmberDataError(f"the training split has {data.numel()} bytes, fewer than seq_len+1={window}: "
                                 "give more text or a smaller data.seq_len")
        self.data, self.window, self.length, self.seed = data, window, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        start = int(torch.randint(0, self.data.numel() - self.window + 1, (1,), generator=gen))
        return self.data[start : start + self.window].long()  # (n + 1,)


class ContiguousWindows(Dataset):
    """Non-overlapping windows of n+1 bytes covering a split from its start (evaluation)."""

    def __init__(self, data: torch.Tensor, window: int, max_windows: Optional[int]):
        count = max(1, (data.numel() - 1) // (window - 1)) if data.numel() > window else 0
        if count == 0:
            raise EmberDataError(f"an evaluation split has {data.numel()} bytes, fewer than seq_len+1={window}: "
                                 "give more text, a larger data.val_fraction, or a smaller data.seq_len")
        self.data, self.window = data, window
        self.count = count if max_windows is None else min(count, max_windows)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> torch.Tensor:
        start = index * (self.window - 1)  # each window predicts the bytes after the previous one's inputs
        return self.data[start : start + self.window].long()


def unigram_bits(data: torch.Tensor) -> float:
    """Entropy of the byte histogram in bits per byte: what a model with no context could reach."""
    counts = torch.bincount(data.long(), minlength=256).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log2()).sum())


class Interleave:
    """Batches of several loaders, one loader per batch, drawn with the given shares by a seeded generator
    (the same sequence every epoch and run); `length` batches per epoch. A loader that runs out restarts.

    Stateful like ResumableLoader (its loaders are ResumableLoaders): a resumed run replays the draws of the batches
    already served and each loader skips what it had served, so the pass continues where it stopped."""

    def __init__(self, loaders: list[ResumableLoader], shares: list[float], length: int, seed: int):
        self.loaders, self.shares, self.length, self.seed = loaders, np.asarray(shares) / sum(shares), length, seed
        self._served = self._skip = 0

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        skip, self._skip = self._skip, 0
        return self._batches(skip)

    def _batches(self, skip: int):
        rng = np.random.default_rng([self.seed, 7])
        picks = [int(rng.choice(len(self.loaders), p=self.shares)) for _ in range(self.length)]
        for i, loader in enumerate(self.loaders):
            loader.load_state_dict({"batches": pass_position(picks[:skip].count(i), loader)})
        running = [iter(loader) for loader in self.loaders]
        self._served = skip
        for i in picks[skip:]:
            batch = next(running[i], None)
            if batch is None:
                running[i] = iter(self.loaders[i])
                batch = next(running[i])
            self._served += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"batches": pass_position(self._served, self)}

    def load_state_dict(self, state: dict[str, int]):
        self._skip = int(state["batches"])


class TextBytes(LightningDataModule):
    """Byte-level text for language modelling: built-in corpus, text files, enwik8, or shards.

    `path` may be a text file, a folder of text files, or webdataset shards written by `ember data
    prepare text`: a local folder (recognised by its manifest), a folder URL, a brace pattern or a
    pipe: (data_modules/shards.py, remote.py). Files are split contiguously:
    the first bytes train, then validation, then test (nanoGPT's tiny-shakespeare split is
    val_fraction 0.1, test_fraction 0; enwik8's standard split is split_bytes [90e6, 5e6, 5e6]).

    Args:
        path: text file, folder, or shards; null for the built-in offline corpus. Shards: a local shard folder;
            a folder URL serving one (http://host:8000/shards, https://...); a webdataset URL of train shards,
            a brace pattern (https://host/shards/train-{000000..000099}.tar) or a pipe per shard
            (pipe:aws s3 cp s3://bucket/shards/train-{000000..000099}.tar -), which needs val_path.
        seq_len: bytes per training sequence n (each sample holds n+1 bytes).
        batch_size: sequences per batch (per device).
        val_fraction: share of the bytes held out for validation (files only).
        test_fraction: share held out for testing after validation; 0 tests on the validation split.
        split_bytes: explicit [train, val, test] byte counts instead of the fractions.
        train_windows: random training windows per epoch.
        max_eval_windows: cap on validation/test windows (null evaluates the whole split).
        prompts: prompts completed by `ember predict`.
        num_workers: DataLoader worker processes.
        seed: seed of the training-window offsets.
        benchmarks: generated memory benchmarks (SessionRecall, ProceduralPatterns, MQAR, ...) that
            `ember test` runs after the text, reporting eval/<task>/...; none by default.
        benchmark_size: examples per benchmark in `ember test`.
        benchmark_share: share of the training batches drawn from the benchmarks' training splits (taken in
            turn), the rest being text; 0 trains on text only. Open-vocabulary benchmarks (OpenRecall, open
            ProceduralPatterns) test on names and values their training split never holds.
        benchmark_context_weight: weight in the training loss of a benchmark batch's non-answer bytes, the
            answers keeping 1 (MemoryTaskData's context_weight).
        val_path: the val shards when path is a brace pattern or pipe: (which has no manifest naming them), e.g.
            https://host/shards/val-{000000..000009}.tar; null otherwise (a folder's manifest names them).
        bad_shards: what a shard that cannot be read (corrupt, missing, unreachable) does: "stop" raises one
            error naming its URL and the fix; "skip" logs that as a warning and trains on the other shards.
    """

    def __init__(self, path: Optional[str] = None, seq_len: int = 256, batch_size: int = 32,
                 val_fraction: float = 0.1, test_fraction: float = 0.0, split_bytes: Optional[list[int]] = None,
                 train_windows: int = 100_000, max_eval_windows: Optional[int] = 256,
                 prompts: Optional[list[str]] = None, num_workers: int = 0, seed: int = 0,
                 benchmarks: Optional[list[MemoryTask]] = None, benchmark_size: int = 128,
                 benchmark_share: float = 0.0, benchmark_context_weight: float = 0.0,
                 val_path: Optional[str] = None, bad_shards: str = "stop"):
        super().__init__()
        if seq_len < 2 or batch_size < 1:
            raise EmberConfigError(f"seq_len={seq_len} must be >= 2 and batch_size={batch_size} >= 1")
        check_loader_args(batch_size, num_workers, seed)
        if train_windows < 1 or benchmark_size < 1 or (max_eval_windows is not None and max_eval_windows < 1):
            raise EmberConfigError(f"train_windows={train_windows}, benchmark_size={benchmark_size} and "
                                   f"max_eval_windows={max_eval_windows} must be >= 1 (max_eval_windows null: the "
                                   "whole split)")
        if not 0 < val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
            raise EmberConfigError(f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in "
                                   "[0, 1) with val_fraction > 0 and a sum below 1")
        if split_bytes is not None and (len(split_bytes) != 3 or min(split_bytes) < 0):
            raise EmberConfigError(f"split_bytes={split_bytes} must be three byte counts [train, val, test]")
        if bad_shards not in BAD_SHARDS:
            raise EmberConfigError(f"bad_shards={bad_shards!r} must be 'stop' (an unreadable shard stops training, "
                                   "named) or 'skip' (it is skipped with a warning)")
        check_shard_source(path, val_path)
        self.path = None if path is None else local_or_url(path)
        if self.path is not None and not is_url(self.path) and not self.path.exists():
            read_text_files(self.path)  # raises the message that names the fix
        self.val_path, self.bad_shards = val_path, bad_shards
        self.seq_len, self.batch_size, self.num_workers, self.seed = seq_len, batch_size, num_workers, seed
        self.val_fraction, self.test_fraction, self.split_bytes = val_fraction, test_fraction, split_bytes
        self.train_windows, self.max_eval_windows = train_windows, max_eval_windows
        self.prompts = prompts or ["The ", "def "]
        if not 0 <= benchmark_share < 1 or not 0 <= benchmark_context_weight <= 1:
            raise EmberConfigError(f"benchmark_share={benchmark_share} must be in [0, 1) and benchmark_context_weight="
                                   f"{benchmark_context_weight} in [0, 1]")
        if benchmark_share and not benchmarks:
            raise EmberConfigError(f"benchmark_share={benchmark_share} needs data.benchmarks to train on: list "
                                   "them, or set benchmark_share 0")
        self.benchmarks, self.benchmark_size = list(benchmarks or []), benchmark_size
        self.benchmark_share, self.benchmark_context_weight = benchmark_share, benchmark_context_weight
        self.eval_tasks = [None, *self.benchmarks]  # per test loader: text first (read by EmberModel)
        self.splits: dict[str, torch.Tensor] = {}
        self.unigram_bpb: Optional[float] = None
        self._shards: Optional[dict[str, list[str]]] = None  # split -> shard paths or URLs

    @property
    def is_sharded(self) -> bool:
        return self.path is not None and (is_url(self.path) or (self.path / MANIFEST).is_file())

    def setup(self, stage: str):
        if self.splits or self._shards:
            return
        if self.is_sharded:
            self._shards = shard_splits(self.path, self.val_path)
            self.splits = {"val": read_shard_bytes(self._shards["val"], self.bad_shards)}
            self.splits["test"] = self.splits["val"]
            sample = read_shard_bytes(self._shards["train"], self.bad_shards, max_bytes=1 << 22)
        else:
            data = builtin_corpus() if self.path is None else read_text_files(self.path)
            self.splits = self._split(torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy()))
            sample = self.splits["train"]
        self.unigram_bpb = unigram_bits(sample)
        log.info("data: %s; train %s, val %d bytes; unigram entropy %.3f bits/byte",
                 self.path or "built-in corpus", "sharded" if self._shards else f"{self.splits['train'].numel()}",
                 self.splits["val"].numel(), self.unigram_bpb)

    def _split(self, data: torch.Tensor) -> dict[str, torch.Tensor]:
        total = data.numel()
        if self.split_bytes is not None:
            n_train, n_val, n_test = self.split_bytes
            if n_train + n_val + n_test > total:
                raise EmberDataError(f"split_bytes={self.split_bytes} needs {n_train + n_val + n_test} bytes but "
                                     f"{self.path} has {total}: is it the full file?")
        else:
            n_val, n_test = int(total * self.val_fraction), int(total * self.test_fraction)
            n_train = total - n_val - n_test
        train, val = data[:n_train], data[n_train : n_train + n_val]
        test = data[n_train + n_val : n_train + n_val + n_test] if n_test else val
        return {"train": train, "val": val, "test": test}

    def _rank(self) -> tuple[int, int]:
        """Lightning sets no RANK env var for its own launchers: take it from the trainer."""
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> ResumableLoader | Interleave:
        if not self.benchmark_share:
            return self._text_loader(self.seed)
        return self._mixed()

    def _text_loader(self, seed: int) -> ResumableLoader:
        if self._shards is not None:
            rank, world = self._rank()
            windows = math.ceil(self.train_windows / world)
            dataset = ShardWindows(self._shards["train"], self.seq_len + 1, windows, self.seed, rank, world,
                                   self.bad_shards, f"train ({self.path})")
            return ResumableLoader(dataset, batch_size=self.batch_size, num_workers=self.num_workers)
        dataset = RandomWindows(self.splits["train"], self.seq_len + 1, self.train_windows, seed)
        return ResumableLoader(dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers,
                          drop_last=True, persistent_workers=self.num_workers > 0)

    def _mixed(self) -> Interleave:
        """Text batches and, a `benchmark_share` of the time, batches of the benchmarks' training splits. Each
        rank draws its own windows and examples (its own seed): Lightning adds no distributed sampler here."""
        rank, world = self._rank()
        seed = self.seed * world + rank
        tasks = [ResumableLoader(TaskExamples(task, "train", self.train_windows, seed, self.benchmark_context_weight),
                                 batch_size=self.batch_size, drop_last=True, num_workers=self.num_workers)
                 for task in self.benchmarks]
        text = self._text_loader(seed)
        shares = [1 - self.benchmark_share] + [self.benchmark_share / len(tasks)] * len(tasks)
        return Interleave([text, *tasks], shares, len(text), seed)

    def _eval_loader(self, split: str) -> DataLoader:
        dataset = ContiguousWindows(self.splits[split], self.seq_len + 1, self.max_eval_windows)
        return DataLoader(dataset, batch_size=self.batch_size, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        if not self.benchmarks:
            return self._eval_loader("test")
        tasks = [DataLoader(TaskExamples(task, "test", self.benchmark_size, self.seed), batch_size=self.batch_size,
                            num_workers=self.num_workers) for task in self.benchmarks]
        return [self._eval_loader("test"), *tasks]

    def predict_dataloader(self) -> DataLoader:
        prompts = [torch.tensor(list(p.encode("utf-8")), dtype=torch.long) for p in self.prompts]
        return DataLoader(prompts, batch_size=1)
