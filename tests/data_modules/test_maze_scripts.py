"""The maze scripts under benchmarks/ (reproduce/maze_plateau.py, reproduce/maze_ties.py,
analysis/maze_answers.py) on hand-made and generated mazes."""

from __future__ import annotations

import math

from helpers import load_script


def test_maze_plateau_yardsticks_score_what_each_window_decides():
    import numpy as np

    from ember.data_modules.maze import OPEN, PATH, WALL, generate_mazes

    script = load_script("benchmarks/reproduce/maze_plateau.py")
    cross = np.array([[WALL, OPEN, WALL, OPEN, OPEN, OPEN, WALL, OPEN, WALL]], np.uint8)  # a plus sign, 3x3
    assert script.open_neighbours(cross, 3).tolist() == [[5, 1, 5, 1, 4, 1, 5, 1, 5]]
    # a coin flip per open cell: the token-only table scores ln 2, whatever it is given
    rng = np.random.default_rng(0)
    coins = lambda: (np.full((50, 9), OPEN, np.uint8), np.where(rng.random((50, 9)) < 0.5, PATH, OPEN))  # noqa: E731
    assert abs(script.lookup_entropy(coins(), coins(), 3, 0) - math.log(2)) < 0.02
    # the degree labels are a function of the 3x3 window: that table all but solves them, the cell's own token cannot
    train, held = (generate_mazes(k, seed=s, size=7, min_path=6) for k, s in ((200, 0), (50, 1)))
    degree = lambda m: (m.inputs, script.open_neighbours(m.inputs, 7))  # noqa: E731
    own, window = (script.lookup_entropy(degree(train), degree(held), 7, r) for r in (0, 1))
    assert window < 0.05 and own > 0.25


def test_maze_ties_counts_forks_and_scores_each_turned_rule(tmp_path, capsys):
    import numpy as np

    from ember.data_modules import maze

    script = load_script("benchmarks/reproduce/maze_ties.py")
    room = np.full(9, maze.OPEN, np.uint8)  # 3x3 open room, S top-left, G bottom-right: path 0, 3, 6, 7, 8
    room[0], room[8] = maze.START, maze.GOAL
    label = maze.label_path(room, maze.shortest_path(room, 3)[0])
    assert script.forks(room, label, 3) == 2  # down or right at cells 0 and 3; cells 6 and 7 can only go right
    assert all(np.array_equal(maze.dihedral(maze.dihedral(room, k), script.INVERSE[k]), room) for k in range(8))
    data = maze.generate_mazes(6, seed=0, size=10, min_path=14, style="open")
    file = tmp_path / "open.csv"
    text = lambda grid: "".join(maze.CHARS[t - 1] for t in grid)  # noqa: E731
    file.write_text("question,answer\n" + "".join(f"{text(x)},{text(y)}\n" for x, y in zip(*data)))
    script.main([str(file), "--size", "10"])
    out = capsys.readouterr().out
    assert "reproduces: 6 of 6 (1.000)" in out and "k=0: 6 of 6 (1.000)" in out


def test_maze_answers_tell_a_tie_break_miss_from_a_wrong_path():
    import numpy as np

    from ember.data_modules import maze

    script = load_script("benchmarks/analysis/maze_answers.py")
    room = np.full(9, maze.OPEN, np.uint8)  # 3x3 open room, S top-left, G bottom-right
    room[0], room[8] = maze.START, maze.GOAL
    label = maze.label_path(room, [0, 3, 6, 7, 8])  # down first: the rule's path
    other = maze.label_path(room, [0, 1, 2, 5, 8])  # right first: as short, another tie-break
    detour = label.copy()
    detour[4] = maze.PATH  # one cell too many
    inputs, labels = np.stack([room] * 4), np.stack([label] * 4)
    shares = script.sort_answers(inputs, labels, np.stack([label, other, detour, room]), 3)
    assert shares == {"exact": 0.25, "another shortest path": 0.25, "not a shortest path": 0.5,
                      "wrong cells where not": 2.0}  # the detour has 1 wrong cell, the copy 3
