"""Shared pieces of the grid-puzzle data (Sudoku, Maze) for the TRM/HRM reasoning models.

A puzzle set is two token arrays of the same shape: `inputs` (the puzzle) and `labels` (the
solution), one flattened grid per row. `PuzzleData` serves a set as dict batches
{"inputs": (b, n) int64, "labels": (b, n) int64}; in training each sample is augmented by a
generator seeded with (seed, epoch, index), so an epoch is deterministic and every epoch differs.
Generated and parsed sets are cached as npz files named by a hash of what produced them.

Letters: b batch, n sequence (grid cells, row-major), N puzzles in a set.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import Dataset, Sampler

from ember.data_modules.resumable import ResumableLoader
from ember.data_modules.splits import SplitLoaders, check_loader_args
from ember.errors import EmberConfigError, EmberDataError
from ember.files import atomic_path

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
CACHE_VERSION = 1  # bump when a generator or reader changes its output for the same parameters

Augment = Callable[[np.ndarray, np.ndarray, np.random.Generator], "tuple[np.ndarray, np.ndarray]"]


class PuzzleSet(NamedTuple):
    """N puzzles: inputs and labels are uint8 token arrays of shape (N, n), row-major grids."""

    inputs: np.ndarray
    labels: np.ndarray

    @property
    def count(self) -> int:
        """The number of puzzles N."""
        return int(self.inputs.shape[0])

    def head(self, count: int) -> PuzzleSet:
        """The first `count` puzzles."""
        return PuzzleSet(self.inputs[:count], self.labels[:count])


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (part of the cache key of a set read from that file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def reading_text(file: Path, holds: str) -> Iterator[None]:
    """Read a puzzle file inside this block: bytes that are not UTF-8 text, or a CSV the csv module cannot split
    (a NUL byte, a field past its size limit), become an EmberDataError naming the file (and the line of the
    first bad byte); `holds` says what the file should hold."""
    try:
        yield
    except UnicodeDecodeError as err:
        data = file.read_bytes()  # the reader decodes in blocks: find the first bad byte in the whole file
        start = _first_bad_byte(data)
        line = data[:start].count(b"\n") + 1
        raise EmberDataError(f"{file}:{line}: byte {data[start]:#04x} is not text (UTF-8): {holds}; fix or delete "
                             "that line") from err
    except csv.Error as err:
        raise EmberDataError(f"{file} is not a CSV file Ember can read ({err}): {holds}") from err


def _first_bad_byte(data: bytes) -> int:
    """The offset of the first byte of data that is not UTF-8 (data is known not to decode)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.start
    return 0


def cache_path(cache_dir: Path, params: dict) -> Path:
    """<cache_dir>/<name>-<split>-<hash of params>.npz; params must be JSON-serialisable."""
    key = json.dumps({**params, "cache_version": CACHE_VERSION}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir / f"{params.get('name', 'puzzles')}-{params.get('split', 'all')}-{digest}.npz"


def save_atomic(path: Path, data: PuzzleSet):
    """Write data to path via a temporary file in the same folder and os.replace: never half-written."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, inputs=data.inputs, labels=data.labels)
        f.flush()
        os.fsync(f.fileno())


def cached(cache_dir: Optional[str], params: dict, make: Callable[[], PuzzleSet]) -> PuzzleSet:
    """The set that make() returns, loaded from the npz cache when present (cache_dir None: no cache)."""
    if cache_dir is None:
        return make()
    path = cache_path(Path(cache_dir).expanduser(), params)
    if path.is_file():
        try:
            with np.load(path) as f:
                data = PuzzleSet(f["inputs"], f["labels"])
            log.info("loaded %d %s puzzles from the cache %s", data.count, params.get("name"), path)
            return data
        except Exception as err:  # a file from elsewhere: rebuild it rather than fail
            log.warning("cache file %s is unreadable (%s: %s); rebuilding it", path, type(err).__name__, err)
    data = make()
    save_atomic(path, data)
    log.info("cached %d %s puzzles at %s", data.count, params.get("name"), path)
    return data


class EpochSampler(Sampler[int]):
    """Yields keys epoch * N + index (shuffled per epoch when shuffle): the dataset reads both from the key.

    Lightning calls set_epoch before each epoch, also through its distributed wrapper, so the
    keys, and the augmentations they seed, are the same on a resumed run.
    """

    def __init__(self, size: int, seed: int, shuffle: bool = True):
        self.size, self.seed, self.shuffle, self.epoch = size, seed, shuffle, 0

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        order = np.arange(self.size)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch, 1]).permutation(self.size)
        base = self.epoch * self.size
        return iter((base + order).tolist())


class PuzzleDataset(Dataset):
    """A PuzzleSet as int64 tensors; with `augment`, sample (epoch, index) gets augment(x, y, rng(seed, epoch, index)).

    Keys past len() encode the epoch (key = epoch * N + index, see EpochSampler); plain indices are epoch 0.
    """

    def __init__(self, data: PuzzleSet, augment: Optional[Augment] = None, seed: int = 0):
        self.data, self.augment, self.seed = data, augment, seed

    def __len__(self) -> int:
        return self.data.count

    def __getitem__(self, key: int) -> dict[str, torch.Tensor]:
        epoch, index = divmod(int(key), self.data.count)
        x, y = self.data.inputs[index], self.data.labels[index]  # (n,), (n,)
        if self.augment is not None:
            x, y = self.augment(x, y, np.random.default_rng([self.seed, epoch, index]))
        return {"inputs": torch.from_numpy(np.asarray(x, dtype=np.int64)),
                "labels": torch.from_numpy(np.asarray(y, dtype=np.int64))}


class PuzzleData(SplitLoaders, LightningDataModule, ABC):
    """Base of the grid-puzzle data modules: builds the three splits and serves them as dict batches.

    Batches: {"inputs": (b, n) int64 token ids, "labels": (b, n) int64 token ids}. Subclasses set
    `name`, `vocab_size`, `seq_len` (read by the model; token 0 is padding) and define `build`
    (the PuzzleSet of a split) and `augment_pair` (one random symmetry of a puzzle and its solution).

    Args:
        batch_size: puzzles per batch (per device).
        augment: augment training puzzles on the fly (a new random symmetry per epoch and puzzle).
        seed: seed of the generated puzzles and of the augmentations and shuffling.
        num_workers: DataLoader worker processes.
        cache_dir: folder of the npz cache of generated and parsed sets (null: no cache).
    """

    name: str = "puzzle"
    vocab_size: int
    seq_len: int
    pad_id: int = 0

    def __init__(self, batch_size: int = 64, augment: bool = True, seed: int = 0, num_workers: int = 0,
                 cache_dir: Optional[str] = "runs/cache"):
        super().__init__()
        check_loader_args(batch_size, num_workers, seed)
        self.batch_size, self.augment, self.seed = batch_size, augment, seed
        self.num_workers, self.cache_dir = num_workers, cache_dir
        self._sets: dict[str, PuzzleSet] = {}

    @abstractmethod
    def build(self, split: str) -> PuzzleSet:
        """The puzzles of split ("train", "val" or "test"), token ids, shape (N, seq_len)."""

    @staticmethod
    @abstractmethod
    def augment_pair(inputs: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One random symmetry applied to a puzzle (n,) and its solution (n,) together (a module-level
        function, so DataLoader workers pickle it by name)."""

    def split_file(self, split: str) -> tuple[Optional[str], Optional[int]]:
        """The file a split reads (train_path, val_path, eval_path) and how many of its puzzles (train_size,
        val_size, eval_limit); (None, ...) where the split is generated. Subclasses set those attributes."""
        if split == "train":
            return self.train_path, self.sizes["train"]
        if split == "val":
            return self.val_path, self.sizes["val"]
        return self.eval_path, self.eval_limit

    def _warn_if_validating_on_test(self):
        """Validation puzzles that are test puzzles choose best.ckpt (and any halting threshold) on the test set."""
        if self.val_path and self.eval_path and Path(self.val_path).expanduser().resolve() == \
                Path(self.eval_path).expanduser().resolve():
            log.warning("%s: val_path and eval_path are the same file, so the validation puzzles are the first "
                        "%d test puzzles and best.ckpt is chosen on test data; give val_path a separate file, or "
                        "null to validate on generated puzzles", self.name, self.sizes["val"])

    def puzzles(self, split: str) -> PuzzleSet:
        """The PuzzleSet of a split, built (or loaded from the cache) on first use."""
        if split not in SPLITS:
            raise EmberConfigError(f"unknown split {split!r}: use one of {SPLITS}")
        if split not in self._sets:
            if split == "val":
                self._warn_if_validating_on_test()
            data = self.build(split)
            if data.inputs.shape != data.labels.shape or data.inputs.shape[1:] != (self.seq_len,):
                raise EmberDataError(f"{self.name} {split}: inputs {data.inputs.shape} and labels "
                                     f"{data.labels.shape} must both be (N, {self.seq_len})")
            if data.count == 0:
                raise EmberDataError(f"the {self.name} {split} split is empty: give a file with puzzles or a "
                                     "size >= 1")
            self._sets[split] = data
        return self._sets[split]

    def setup(self, stage: Optional[str] = None):
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in needed.get(stage or "", SPLITS):
            self.puzzles(split)

    def _loader(self, split: str) -> ResumableLoader:
        data = self.puzzles(split)
        train = split == "train"
        augment = self.augment_pair if train and self.augment else None
        dataset = PuzzleDataset(data, augment, self.seed)
        sampler = EpochSampler(data.count, self.seed, shuffle=train)
        return ResumableLoader(dataset, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                               drop_last=train and data.count >= self.batch_size,
                               persistent_workers=self.num_workers > 0)
