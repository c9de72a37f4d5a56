"""ResumableLoader (and TextBytes' Interleave): a pass resumed from a saved state yields the batches the
uninterrupted pass yields from there on, without loading the skipped ones."""

import torch
from torch.utils.data import Dataset, IterableDataset

from ember.data_modules.memory_task import MemoryTaskData
from ember.data_modules.recall import OpenRecall, SessionRecall
from ember.data_modules.resumable import ResumableLoader
from ember.data_modules.sudoku import SudokuData
from ember.data_modules.text import TextBytes


class Numbers(Dataset):
    """0..n-1, remembering which indices were loaded."""

    def __init__(self, n: int):
        self.n, self.loaded = n, []

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.loaded.append(i)
        return i


class Stream(IterableDataset):
    def __iter__(self):
        return iter(range(10))


def served(loader, batches: int) -> dict:
    """Iterate `batches` batches of a pass and return the loader's state."""
    it = iter(loader)
    for _ in range(batches):
        next(it)
    return loader.state_dict()


def test_a_resumed_pass_continues_at_the_saved_batch_and_loads_none_before_it():
    whole = [b.tolist() for b in ResumableLoader(Numbers(11), batch_size=2, drop_last=True)]
    state = served(ResumableLoader(Numbers(11), batch_size=2, drop_last=True), 3)
    assert state == {"batches": 3}
    data = Numbers(11)
    loader = ResumableLoader(data, batch_size=2, drop_last=True)
    loader.load_state_dict(state)
    assert [b.tolist() for b in loader] == whole[3:]
    assert data.loaded == list(range(6, 10))  # the skipped batches were never read
    assert [b.tolist() for b in loader] == whole  # the pass after starts at batch 0
    assert loader.state_dict() == {"batches": 0}  # a complete pass: the next one starts afresh


def test_an_iterable_dataset_is_read_and_dropped_up_to_the_saved_batch():
    loader = ResumableLoader(Stream(), batch_size=3)
    loader.load_state_dict(served(ResumableLoader(Stream(), batch_size=3), 2))
    assert [b.tolist() for b in loader] == [[6, 7, 8], [9]]


def test_text_mixed_with_benchmark_batches_resumes_mid_pass():
    def loader():
        task = OpenRecall(window=16, delays=(1,), people=1, attributes=1, seq_len=160)
        dm = TextBytes(seq_len=32, batch_size=2, train_windows=40, benchmarks=[task], benchmark_share=0.4)
        dm.setup("fit")
        return dm.train_dataloader()

    def tokens(batch):
        return batch["tokens"] if isinstance(batch, dict) else batch

    whole = [tokens(b) for b in loader()]
    resumed = loader()
    resumed.load_state_dict(served(loader(), 7))
    rest = [tokens(b) for b in resumed]
    assert len(rest) == len(whole) - 7 and all(torch.equal(a, b) for a, b in zip(rest, whole[7:]))


def test_memory_task_training_batches_resume_mid_pass():
    def loader():
        return MemoryTaskData(SessionRecall(window=16, delays=(1,), people=1, attributes=1, seq_len=160),
                              batch_size=2, train_size=12).train_dataloader()

    whole = [b["tokens"] for b in loader()]
    resumed = loader()
    resumed.load_state_dict(served(loader(), 4))
    assert all(torch.equal(a["tokens"], b) for a, b in zip(list(resumed), whole[4:], strict=True))


def test_puzzle_batches_resume_mid_pass_in_a_later_epoch(tmp_path):
    """EpochSampler's order (and augmentation) is a function of (seed, epoch): a later epoch resumes exactly too."""
    def loader():
        dm = SudokuData(train_size=12, val_size=2, test_size=2, batch_size=2, cache_dir=str(tmp_path), seed=3)
        dm.setup("fit")
        train = dm.train_dataloader()
        train.sampler.set_epoch(3)  # what Lightning does before each epoch
        return train

    whole = [b["inputs"] for b in loader()]
    resumed = loader()
    resumed.load_state_dict(served(loader(), 4))
    assert all(torch.equal(a["inputs"], b) for a, b in zip(list(resumed), whole[4:], strict=True))
