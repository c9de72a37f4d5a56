"""Sudoku and Maze puzzle data (TRM/HRM): solver, generators, augmentations, readers, data modules, cache."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from ember.data_modules import maze, puzzles, sudoku
from ember.data_modules.maze import CHARS, GOAL, OPEN, PATH, START, WALL, MazeData, augment_maze, check_maze
from ember.data_modules.puzzles import PuzzleSet, cache_path
from ember.data_modules.sudoku import SudokuData, check_pair, count_solutions, generate_puzzle, read_sudoku, solve
from ember.errors import EmberConfigError, EmberDataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SUDOKU_DIR = SHARED / "sudoku_hard_tdoku"
HARD = SUDOKU_DIR / "puzzles5_forum_hardest_1905_11+.txt"
MAZE_DIR = SHARED / "maze_hard_30x30_1k"
PATTERN = [(r * 3 + r // 3 + c) % 9 + 1 for r in range(9) for c in range(9)]  # a valid full grid


def needs(path: Path):
    if not path.exists():
        pytest.skip(f"{path} is absent (shared data not mounted)")


def digits(tokens: np.ndarray) -> list[int]:
    return (np.asarray(tokens, dtype=np.int64) - 1).tolist()


def grid_text(grid: list[int]) -> str:
    return "".join(str(d) if d else "." for d in grid)


def two_solution_puzzle() -> list[int]:
    """A full grid with a 'deadly rectangle' blanked: rows 1, 3 x columns 2, 5 hold 1 9 / 9 1 in two boxes,
    so swapping the two digits gives a second solution."""
    text = "8.25.31463468217591.54.6283284965317913784562657132498428359671569217834731648925"
    return [0 if ch == "." else int(ch) for ch in text]


# ---- Sudoku solver and generator -------------------------------------------------------------------------------


def test_counter_on_hand_made_puzzles():
    assert count_solutions(PATTERN) == 1 and check_pair(PATTERN, PATTERN) is None
    assert count_solutions(two_solution_puzzle()) == 2
    assert count_solutions(two_solution_puzzle(), limit=5) == 2
    unsolvable = [0] * 81
    unsolvable[:8] = range(1, 9)  # row 1 needs a 9 in column 9 ...
    unsolvable[9 + 8] = 9  # ... where row 2 already has it
    assert count_solutions(unsolvable) == 0 and solve(unsolvable) is None
    clash = list(PATTERN)
    clash[1] = clash[0]
    assert count_solutions(clash) == 0
    assert count_solutions([0] * 81) == 2


def test_generated_puzzles_are_unique_and_deterministic():
    for k in range(10):
        puzzle, solution, clues = generate_puzzle(random.Random(k), min_clues=17)
        assert count_solutions(puzzle) == 1 and check_pair(puzzle, solution) is None
        assert solve(puzzle) == solution and clues == sum(d > 0 for d in puzzle) >= 17
    assert generate_puzzle(random.Random(3))[0] == generate_puzzle(random.Random(3))[0]
    puzzle, _, clues = generate_puzzle(random.Random(0), min_clues=40)
    assert clues == 40 == sum(d > 0 for d in puzzle)
    a, b = sudoku.generate_sudoku(3, seed=1), sudoku.generate_sudoku(5, seed=1)
    assert np.array_equal(a.inputs, b.inputs[:3])  # puzzle i depends on (seed, stream, i) only
    assert not np.array_equal(a.inputs, sudoku.generate_sudoku(3, seed=1, stream="val").inputs)


def test_sudoku_augmentation_keeps_validity_and_is_a_bijection():
    data = sudoku.generate_sudoku(5, seed=0)
    rng = np.random.default_rng(0)
    transposed = 0
    for k in range(40):
        token_map, source = sudoku.sudoku_symmetry(np.random.default_rng(k))
        assert sorted(source.tolist()) == list(range(81))
        assert token_map[:2].tolist() == [0, 1] and sorted(token_map[2:].tolist()) == list(range(2, 11))
        transposed += int(source[0] % 9 == source[1] % 9)  # new row 0 is an old column only when transposed
        x, y = sudoku.augment_sudoku(data.inputs[k % 5], data.labels[k % 5], rng)
        assert x.dtype == data.inputs.dtype and (x == 1).sum() == (data.inputs[k % 5] == 1).sum()
        assert check_pair(digits(x), digits(y)) is None and count_solutions(digits(x)) == 1
    assert 5 < transposed < 35


def test_solver_agrees_with_the_solved_hard_set():
    needs(HARD)
    solved = SUDOKU_DIR / "solved" / "puzzles5_forum_hardest_1905_11+.csv"
    needs(solved)
    rows = solved.read_text().splitlines()[1:21]
    for row in rows:
        puzzle_text, solution_text = row.split(",")
        puzzle = [0 if ch == "." else int(ch) for ch in puzzle_text]
        assert count_solutions(puzzle) == 1
        assert grid_text(solve(puzzle)) == solution_text
    data = read_sudoku(HARD, limit=20)
    assert data.inputs.shape == (20, 81) and data.inputs.dtype == np.uint8
    assert ["".join(str(d) for d in digits(y)) for y in data.labels] == [r.split(",")[1] for r in rows]


# ---- Sudoku reader ----------------------------------------------------------------------------------------------


def test_sudoku_reader_accepts_comments_crlf_and_limit(tmp_path):
    puzzle, solution, _ = generate_puzzle(random.Random(0), 30)
    text = tmp_path / "set.txt"
    text.write_bytes(f"# comment\r\n{grid_text(puzzle)}\r\n{grid_text(puzzle)}\r\n\r\n".encode())
    data = read_sudoku(text)
    assert data.inputs.shape == (2, 81) and digits(data.labels[0]) == solution and digits(data.inputs[0]) == puzzle
    assert read_sudoku(text, limit=1).inputs.shape == (1, 81)
    table = tmp_path / "set.csv"
    table.write_text(f"puzzle,solution\n{grid_text(puzzle)},{grid_text(solution)}\n")
    assert digits(read_sudoku(table).labels[0]) == solution


@pytest.mark.parametrize("line, words", [
    ("1" * 80, "80 characters"),
    ("x" + "." * 80, "['x']"),
    (None, "two or more solutions"),
    ("12345678." + "........9" + "." * 63, "no solutions"),
])
def test_sudoku_reader_rejects_bad_puzzles(tmp_path, line, words):
    file = tmp_path / "bad.txt"
    line = grid_text(two_solution_puzzle()) if line is None else line
    file.write_text(f"# header\n{grid_text(PATTERN)}\n{line}\n")
    with pytest.raises(EmberDataError, match=words) as err:
        read_sudoku(file)
    assert f"{file}:3" in str(err.value) and "fix" in str(err.value)


def test_sudoku_reader_rejects_bad_solutions(tmp_path):
    puzzle, solution, _ = generate_puzzle(random.Random(1), 30)
    wrong = list(solution)
    wrong[0], wrong[1] = wrong[1], wrong[0]
    file = tmp_path / "bad.csv"
    file.write_text(f"puzzle,solution\n{grid_text(puzzle)},{grid_text(solution)}\n{grid_text(puzzle)},"
                    f"{grid_text(wrong)}\n")
    with pytest.raises(EmberDataError, match=f"{file}:3"):
        read_sudoku(file)
    file.write_text(f"quiz,answer\n{grid_text(puzzle)},{grid_text(solution)}\n")
    with pytest.raises(EmberDataError, match="puzzle,solution"):
        read_sudoku(file)
    with pytest.raises(EmberDataError, match="does not exist"):
        read_sudoku(tmp_path / "missing.txt")


# ---- Maze -------------------------------------------------------------------------------------------------------


def test_maze_generator_gives_a_unique_shortest_path():
    rng = random.Random(0)
    for openings in (0.0, 0.05):
        for _ in range(5):
            x, y = maze.generate_maze(rng, size=12, min_path=20, openings=openings)
            assert x.shape == y.shape == (144,) and (x == START).sum() == 1 and (x == GOAL).sum() == 1
            path, unique = maze.shortest_path(x, 12)
            assert unique and len(path) - 1 >= 20
            expected = x.copy()
            expected[path[1:-1]] = PATH
            assert np.array_equal(y, expected) and check_maze(x, y, 12) is None
    dist, count, _ = maze.bfs([True] * 4, 2, 0)  # a 2x2 open square: two shortest paths to the far corner
    assert dist == [0, 1, 1, 2] and count == [1, 1, 1, 2]
    with pytest.raises(EmberConfigError, match="lower min_path"):
        maze.generate_maze(random.Random(0), size=6, min_path=17, tries=3)


def test_dihedral_augmentation_keeps_the_label_a_shortest_path():
    x, y = maze.generate_maze(random.Random(1), size=12, min_path=20)
    seen = set()
    for k in range(60):
        ax, ay = augment_maze(x, y, np.random.default_rng(k))
        assert check_maze(ax, ay, 12) is None and ax.dtype == x.dtype
        seen.add(tuple(ax.tolist()))
    assert len(seen) == 8  # the maze has no symmetry of its own: all 8 turns were drawn
    turns = {tuple(maze.dihedral(np.arange(144), k).tolist()) for k in range(8)}
    assert len(turns) == 8 and all(sorted(t) == list(range(144)) for t in turns)


def test_tied_shortest_paths_prefer_down_left_right_up():
    square = np.full(9, OPEN, np.uint8)  # a 3x3 open room: six shortest paths between opposite corners
    square[0], square[8] = START, GOAL
    assert maze.shortest_path(square, 3) == ([0, 3, 6, 7, 8], False)  # down, down, right, right
    square[0], square[8] = GOAL, START
    assert maze.shortest_path(square, 3) == ([8, 7, 6, 3, 0], False)  # left, left, up, up
    square[4] = WALL
    square[0], square[8] = START, OPEN
    square[2] = GOAL  # around the wall the only way is right along the top row
    assert maze.shortest_path(square, 3) == ([0, 1, 2], True)


def test_tie_order_reproduces_the_maze_hard_labels():
    """Every Maze-Hard maze has tied shortest paths; its label is the one TIE_ORDER picks."""
    needs(MAZE_DIR / "train.csv")
    for name in ("train.csv", "test.csv"):
        data = maze.read_mazes(MAZE_DIR / name, limit=100)
        for x, y in zip(*data):
            path, unique = maze.shortest_path(x, 30)
            assert not unique and np.array_equal(maze.label_path(x, path), y)


def test_augmentation_relabels_tied_paths_by_the_tie_order():
    x, y = maze.generate_maze(random.Random(3), size=12, min_path=24, style="open")
    assert not maze.shortest_path(x, 12)[1]
    turned_rules = 0
    for seed in range(40):
        ax, ay = augment_maze(x, y, np.random.default_rng(seed))
        assert check_maze(ax, ay, 12) is None
        assert np.array_equal(ay, maze.label_path(ax, maze.shortest_path(ax, 12)[0]))
        bx, by = augment_maze(x, y, np.random.default_rng(seed), relabel=False)  # the ablation: label turned along
        assert np.array_equal(bx, ax) and check_maze(bx, by, 12) is None
        turned_rules += not np.array_equal(by, ay)
    assert turned_rules > 0  # some symmetries turn the tie-break rule with the maze


def test_open_mazes_look_like_maze_hard():
    data = maze.generate_mazes(12, seed=0, size=12, min_path=24, style="open")
    assert data.inputs.shape == (12, 144)
    for x, y in zip(*data):
        path, unique = maze.shortest_path(x, 12)
        assert check_maze(x, y, 12) is None and len(path) - 1 >= 24
        assert np.array_equal(maze.label_path(x, path), y)
    assert 0.25 < (data.inputs == WALL).mean() < 0.45
    again = maze.generate_mazes(3, seed=0, size=12, min_path=24, style="open", processes=2)  # the same in parallel
    corridors = maze.generate_mazes(2, seed=0, size=12, min_path=24)
    assert np.array_equal(again.inputs, data.inputs[:3]) and np.array_equal(again.labels, data.labels[:3])
    assert not np.array_equal(corridors.inputs, again.inputs[:2])
    with pytest.raises(EmberConfigError, match="style='rooms'"):
        MazeData(style="rooms")
    with pytest.raises(EmberConfigError, match="wall_prob"):
        MazeData(style="open", wall_prob=(0.5, 0.4))
    with pytest.raises(EmberConfigError, match="lower min_path"):
        maze.generate_maze(random.Random(0), size=8, min_path=30, style="open", tries=20)


def test_a_training_file_with_another_tie_break_is_warned(tmp_path, caplog):
    x, y = maze.generate_maze(random.Random(4), size=12, min_path=24, style="open")
    flipped = maze.dihedral(x, 4)  # label the transposed maze by the rule, then transpose back: another tie-break
    other = maze.dihedral(maze.label_path(flipped, maze.shortest_path(flipped, 12)[0]), 4)
    assert not np.array_equal(other, y) and check_maze(x, other, 12) is None
    file = tmp_path / "other.csv"
    write_maze_csv(file, [("".join(CHARS[t - 1] for t in x), "".join(CHARS[t - 1] for t in lab)) for lab in (y, other)])
    with caplog.at_level(logging.WARNING):
        MazeData(size=12, min_path=24, train_path=str(file), train_size=2, cache_dir=str(tmp_path)).puzzles("train")
    assert "1 of 2 training mazes" in caplog.text and "augment false" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        MazeData(size=12, min_path=24, train_path=str(file), train_size=2, augment=False,
                 cache_dir=str(tmp_path)).puzzles("train")
    assert "training mazes" not in caplog.text


def write_maze_csv(file: Path, rows: list[tuple[str, str]]):
    file.write_text("question,answer\n" + "".join(f"{q},{a}\n" for q, a in rows))


def test_maze_reader_checks_each_maze(tmp_path):
    x, y = maze.generate_maze(random.Random(2), size=8, min_path=10)
    q, a = ("".join(CHARS[t - 1] for t in g) for g in (x, y))
    file = tmp_path / "mazes.csv"
    write_maze_csv(file, [(q, a)] * 3)
    data = maze.read_mazes(file, size=8, limit=2)
    assert data.inputs.shape == (2, 64) and np.array_equal(data.labels[0], y)
    detour = list(a)
    detour[detour.index(" ")] = "o"  # an extra 'o' cell: no longer exactly a shortest path
    two_s = q.replace(" ", "S", 1)
    bad_rows = [((q[:-1], a), "63 characters"), ((q.replace(" ", "x", 1), a), "'x'"),
                ((two_s, a), "2 S"), ((q, "".join(detour)), "shortest"), ((q, q), "shortest")]
    for row, words in bad_rows:
        write_maze_csv(file, [(q, a), row])
        with pytest.raises(EmberDataError, match=words) as err:
            maze.read_mazes(file, size=8)
        assert f"{file}:3" in str(err.value) and "fix" in str(err.value)
    folder = tmp_path / "split"
    folder.mkdir()
    np.save(folder / "all__inputs.npy", np.stack([x, x]))
    np.save(folder / "all__labels.npy", np.stack([y, x]))
    with pytest.raises(EmberDataError, match="row 1"):
        maze.read_mazes(folder, size=8)
    with pytest.raises(EmberDataError, match="set size"):
        maze.read_mazes(folder, size=9)


def test_maze_hard_files_read_the_same_from_csv_and_npy():
    needs(MAZE_DIR / "train.csv")
    a = maze.read_mazes(MAZE_DIR / "train.csv", limit=50)
    b = maze.read_mazes(MAZE_DIR / "train", limit=50)
    assert np.array_equal(a.inputs, b.inputs) and np.array_equal(a.labels, b.labels) and a.inputs.shape == (50, 900)


# ---- Data modules and cache -------------------------------------------------------------------------------------


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
