"""PuzzleData (sudoku and maze data modules): batches, determinism, external sets, the validation-file
warning, the cache, the registry."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
import torch

from ember.data_modules import puzzles, sudoku
from ember.data_modules.maze import GOAL, OPEN, START, WALL, MazeData, check_maze
from ember.data_modules.puzzles import PuzzleSet, cache_path
from ember.data_modules.sudoku import SudokuData, check_pair, generate_puzzle
from ember.errors import EmberConfigError
from helpers import MAZE_DIR, SUDOKU_DIR, digits, grid_text, needs


def first_batches(dm, epoch: int = 0) -> list[dict]:
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return list(loader)


def test_sudoku_data_batches_and_determinism(tmp_path):
    make = lambda: SudokuData(train_size=10, val_size=4, test_size=6, batch_size=4, cache_dir=str(tmp_path), seed=3)
    dm = make()
    dm.setup("fit")
    batches = first_batches(dm)
    assert len(batches) == 2 and set(batches[0]) == {"inputs", "labels"}  # 10 puzzles, drop_last
    assert batches[0]["inputs"].shape == (4, 81) and batches[0]["labels"].dtype == torch.int64
    assert (dm.name, dm.vocab_size, dm.seq_len) == ("sudoku", 11, 81)
    for x, y in zip(batches[0]["inputs"], batches[0]["labels"]):
        assert check_pair(digits(x.numpy()), digits(y.numpy())) is None
    again = first_batches(make())
    assert all(torch.equal(a["inputs"], b["inputs"]) for a, b in zip(batches, again))
    later = first_batches(dm, epoch=1)
    assert not torch.equal(batches[0]["inputs"], later[0]["inputs"])
    val, test = list(dm.val_dataloader()), list(dm.test_dataloader())
    assert sum(len(b["inputs"]) for b in val) == 4 and sum(len(b["inputs"]) for b in test) == 6
    with pytest.raises(EmberConfigError, match="min_clues=16"):
        SudokuData(min_clues=16)


def test_maze_data_batches(tmp_path):
    dm = MazeData(size=12, min_path=20, train_size=6, val_size=3, test_size=3, batch_size=3, cache_dir=str(tmp_path))
    batch = first_batches(dm)[0]
    assert batch["inputs"].shape == batch["labels"].shape == (3, 144) and batch["inputs"].dtype == torch.int64
    assert dm.seq_len == 144 and dm.vocab_size == 6 and dm.name == "maze"
    for x, y in zip(batch["inputs"].numpy(), batch["labels"].numpy()):
        assert check_maze(x, y, 12) is None
    assert set(np.unique(batch["inputs"].numpy())) <= {WALL, OPEN, START, GOAL}
    with pytest.raises(EmberConfigError, match="lower min_path"):
        MazeData(size=12, min_path=100)


def test_data_modules_read_external_sets(tmp_path):
    needs(SUDOKU_DIR / "solved")
    csv = SUDOKU_DIR / "solved" / "puzzles5_forum_hardest_1905_11+.csv"
    dm = SudokuData(train_size=4, val_size=2, eval_path=str(csv), eval_limit=5, cache_dir=str(tmp_path))
    assert dm.puzzles("val").count == 2 and dm.puzzles("test").count == 5
    test_inputs = dm.puzzles("test").inputs
    # validation stays generated unless val_path names a file: best.ckpt is never chosen on the test set
    assert not np.isin(dm.puzzles("val").inputs.view("V81").ravel(), test_inputs.view("V81").ravel()).any()
    dm = SudokuData(train_size=4, val_size=2, val_path=str(csv), cache_dir=str(tmp_path))
    np.testing.assert_array_equal(dm.puzzles("val").inputs, test_inputs[:2])
    needs(MAZE_DIR / "train")
    dm = MazeData(train_path=str(MAZE_DIR / "train"), train_size=8, eval_path=str(MAZE_DIR / "test.csv"),
                  eval_limit=4, val_size=2, test_size=1, cache_dir=str(tmp_path))
    assert dm.puzzles("train").inputs.shape == (8, 900) and dm.puzzles("test").count == 4


def test_validating_on_the_test_file_is_warned(tmp_path, caplog):
    csv = tmp_path / "few.csv"
    rows = [generate_puzzle(random.Random(seed), 40)[:2] for seed in range(2)]
    csv.write_text("puzzle,solution\n" + "".join(f"{grid_text(x)},{grid_text(y)}\n" for x, y in rows))
    with caplog.at_level(logging.WARNING):
        SudokuData(val_size=2, val_path=str(csv), eval_path=str(tmp_path / "." / "few.csv"),
                   cache_dir=str(tmp_path)).puzzles("val")
    assert "best.ckpt is chosen on test data" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        SudokuData(val_size=2, val_path=str(csv), cache_dir=str(tmp_path)).puzzles("val")
    assert "test data" not in caplog.text


def test_cache_is_reused(tmp_path, monkeypatch):
    SudokuData(train_size=3, val_size=2, test_size=2, cache_dir=str(tmp_path)).puzzles("train")
    files = list(tmp_path.glob("sudoku-train-*.npz"))
    assert len(files) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("regenerated although the cache holds the set")

    monkeypatch.setattr(sudoku, "generate_sudoku", refuse)
    data = SudokuData(train_size=3, val_size=2, test_size=2, cache_dir=str(tmp_path)).puzzles("train")
    assert data.inputs.shape == (3, 81)
    with pytest.raises(AssertionError, match="regenerated"):  # other parameters: another file
        SudokuData(train_size=3, min_clues=30, cache_dir=str(tmp_path)).puzzles("train")


def test_cache_is_never_half_written(tmp_path, monkeypatch):
    data = PuzzleSet(np.ones((4, 81), np.uint8), np.full((4, 81), 2, np.uint8))
    params = {"name": "sudoku", "split": "train", "count": 4}

    def interrupted_savez(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt

    monkeypatch.setattr(puzzles.np, "savez", interrupted_savez)
    with pytest.raises(KeyboardInterrupt):
        puzzles.cached(str(tmp_path), params, lambda: data)
    assert list(tmp_path.iterdir()) == []  # neither the cache file nor a temporary file
    monkeypatch.undo()
    puzzles.cached(str(tmp_path), params, lambda: data)
    assert [p.name for p in tmp_path.iterdir()] == [cache_path(tmp_path, params).name]
    loaded = puzzles.cached(str(tmp_path), params, lambda: None)
    assert np.array_equal(loaded.labels, data.labels)


def test_registry_lists_the_puzzle_data_modules():
    from ember.registry import load_plugins, plugins

    load_plugins(force=True)
    found = plugins()
    assert found["SudokuData"].kind == found["MazeData"].kind == "data" and "PuzzleData" not in found
