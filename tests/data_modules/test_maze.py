"""Maze (TRM/HRM): generators, shortest paths and their tie order, augmentation, readers, MazeData's warning
about another tie-break (data_modules/maze.py and the maze_paths, maze_generate, maze_files pieces)."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pytest

from ember.data_modules import maze
from ember.data_modules.maze import CHARS, GOAL, OPEN, PATH, START, WALL, MazeData, augment_maze, check_maze
from ember.errors import EmberConfigError, EmberDataError
from helpers import MAZE_DIR, needs


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
