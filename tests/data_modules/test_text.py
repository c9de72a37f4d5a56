"""TextBytes: contiguous splits, folders, windows, bad settings, the built-in corpus's unigram entropy."""

import pytest
import torch
from torch.utils.data import DataLoader

from ember.data_modules.recall import OpenRecall
from ember.data_modules.text import ContiguousWindows, RandomWindows, TextBytes
from ember.errors import EmberConfigError, EmberDataError
from helpers import DEBUG


def test_file_split_is_contiguous_first_train_then_val(text_file):
    dm = TextBytes(path=str(text_file), seq_len=16, val_fraction=0.1)
    dm.setup("fit")
    data = torch.tensor(list(text_file.read_bytes()), dtype=torch.uint8)
    n_val = int(data.numel() * 0.1)
    assert torch.equal(dm.splits["train"], data[: data.numel() - n_val])
    assert torch.equal(dm.splits["val"], data[data.numel() - n_val :])


def test_split_bytes_needs_enough_data(text_file):
    dm = TextBytes(path=str(text_file), split_bytes=[90_000_000, 5_000_000, 5_000_000])
    with pytest.raises(EmberDataError, match="needs 100000000 bytes"):
        dm.setup("fit")


def test_folder_of_text_files_skips_binary(tmp_path):
    (tmp_path / "a.txt").write_text("alpha " * 100)
    (tmp_path / "b.bin").write_bytes(b"\x00" * 500)
    dm = TextBytes(path=str(tmp_path), seq_len=8)
    dm.setup("fit")
    assert dm.splits["train"].numel() + dm.splits["val"].numel() == 600


def test_windows_are_deterministic_and_shifted_targets_line_up(text_file):
    data = torch.arange(100, dtype=torch.uint8)
    windows = RandomWindows(data, 9, 10, seed=3)
    assert torch.equal(windows[4], RandomWindows(data.clone(), 9, 10, seed=3)[4])  # a fresh copy draws the same
    starts = lambda seed: [int(RandomWindows(data, 9, 10, seed=seed)[i][0]) for i in range(10)]  # noqa: E731
    assert len(set(starts(3))) > 1 and starts(3) != starts(4)  # per index and per seed, not one fixed window
    w = windows[4]
    assert torch.equal(w[1:] - w[:-1], torch.ones(8, dtype=torch.long))
    evals = ContiguousWindows(data, 9, None)
    assert torch.equal(evals[1][0], evals[0][-1])  # window k+1 starts where window k's inputs end


@pytest.mark.parametrize("kwargs, fix", [(dict(seq_len=1), "seq_len"), (dict(val_fraction=0.0), "val_fraction"),
                                         (dict(split_bytes=[1, 2]), "three byte counts"),
                                         (dict(benchmark_share=0.5), "needs data.benchmarks"),
                                         (dict(benchmark_share=1.0), "benchmark_share")])
def test_bad_settings_name_the_fix(kwargs, fix):
    with pytest.raises(EmberConfigError, match=fix):
        TextBytes(**kwargs)


def test_a_benchmark_share_mixes_task_batches_into_the_text_the_same_way_every_time():
    task = OpenRecall(window=16, delays=(1,), people=1, attributes=1, seq_len=160)
    dm = TextBytes(seq_len=64, batch_size=2, train_windows=200, benchmarks=[task], benchmark_share=0.25,
                   benchmark_context_weight=0.5)
    dm.setup("fit")
    loader = dm.train_dataloader()
    kinds = ["task" if isinstance(b, dict) else "text" for b in loader]
    assert len(kinds) == 100 and 15 <= kinds.count("task") <= 35  # about a quarter of 100 batches
    again = ["task" if isinstance(b, dict) else "text" for b in dm.train_dataloader()]
    assert kinds == again
    task_batch = next(b for b in loader if isinstance(b, dict))
    assert task_batch["tokens"].shape == (2, 161) and set(task_batch["loss_weight"].unique().tolist()) == {0.5, 1.0}
    text_only = TextBytes(seq_len=64, benchmarks=[task])  # benchmarks for the test only: text batches, as before
    text_only.setup("fit")
    assert isinstance(text_only.train_dataloader(), DataLoader)


def test_unigram_entropy_of_the_builtin_corpus_is_reported():
    from ember.data_modules.text import TextBytes

    dm = TextBytes(seq_len=32)
    dm.setup("fit")
    assert 4.0 < dm.unigram_bpb < 5.5
    assert DEBUG.endswith("quickstart.yaml")
