"""Maze grids and their shortest paths: the tokens, BFS, TIE_ORDER's tie-break, the label of a maze, the 8
dihedral symmetries (augmentation), and `check_maze`.

Grids are size x size cells in row-major order, token ids as HRM: 0 = pad (unused), 1 = `#` wall,
2 = ` ` open, 3 = `S` start, 4 = `G` goal, 5 = `o` path (labels only). The label is the input with the
open cells of the shortest S->G path marked `o`; where shortest paths tie, of the one TIE_ORDER picks.

Letters: n = size * size cells.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Optional

import numpy as np

WALL, OPEN, START, GOAL, PATH = 1, 2, 3, 4, 5
CHARS = "# SGo"  # token id k is CHARS[k - 1]
TOKEN = {ch: k + 1 for k, ch in enumerate(CHARS)}


def bfs(passable: list[bool], size: int, start: int) -> tuple[list[int], list[int], list[int]]:
    """Breadth-first search over the 4-neighbour grid from start.

    Returns (dist, count, parent) per cell: moves from start (-1 unreachable), the number of shortest
    paths (capped at 2, so 1 means unique) and the predecessor on a shortest path (-1 for none).
    """
    n = size * size
    dist, count, parent = [-1] * n, [0] * n, [-1] * n
    dist[start], count[start] = 0, 1
    queue = deque([start])
    while queue:
        i = queue.popleft()
        r, c = divmod(i, size)
        for j, ok in ((i - size, r > 0), (i + size, r < size - 1), (i - 1, c > 0), (i + 1, c < size - 1)):
            if not ok or not passable[j]:
                continue
            if dist[j] < 0:
                dist[j], count[j], parent[j] = dist[i] + 1, count[i], i
                queue.append(j)
            elif dist[j] == dist[i] + 1:
                count[j] = min(2, count[j] + count[i])
    return dist, count, parent


# Where several shortest paths tie, the label takes the one a walk from S picks by preferring the step down, then
# left, right, up (row-major grid, row 0 on top). The Maze-Hard files follow this rule in all 1500 mazes (every one
# has ties; about 20 forks per maze; tests/data_modules/test_maze.py reproduces the labels), so a rotated or
# mirrored maze must be labelled afresh, not rotated with its label: its rotated path follows another rule
# (BENCHMARKS section 8).
TIE_ORDER = "down, left, right, up"


def shortest_steps(i: int, size: int, to_goal: list[int]) -> list[int]:
    """The neighbours of cell i one move nearer the goal (to_goal: BFS distances from G), in TIE_ORDER."""
    r, c = divmod(i, size)
    return [j for j, ok in ((i + size, r < size - 1), (i - 1, c > 0), (i + 1, c < size - 1), (i - size, r > 0))
            if ok and to_goal[j] == to_goal[i] - 1]


def shortest_path(inputs: np.ndarray | list[int], size: int) -> tuple[Optional[list[int]], bool]:
    """(cells of the shortest S->G path including both ends, whether it is the only one); (None, False) if none.

    Among tied shortest paths, the one that prefers the step down, then left, right, up at every fork (TIE_ORDER).
    """
    tokens = list(np.asarray(inputs).tolist())
    start, goal = tokens.index(START), tokens.index(GOAL)
    to_goal, count, _ = bfs([t != WALL for t in tokens], size, goal)
    if to_goal[start] < 0:
        return None, False
    path = [start]
    while path[-1] != goal:
        path.append(shortest_steps(path[-1], size, to_goal)[0])
    return path, count[start] == 1


def label_path(inputs: np.ndarray, path: list[int]) -> np.ndarray:
    """The label of a maze: inputs with the open cells of path marked PATH."""
    labels = inputs.copy()
    inner = np.asarray(path[1:-1], dtype=np.int64)
    labels[inner] = PATH
    return labels


def dihedral(grid: np.ndarray, k: int) -> np.ndarray:
    """Symmetry k in 0..7 of a square grid given flat (n,): k % 4 quarter turns, then a transpose for k >= 4."""
    size = math.isqrt(grid.shape[0])
    square = np.rot90(grid.reshape(size, size), k % 4)  # (size, size)
    return np.ascontiguousarray(square.T if k >= 4 else square).reshape(-1)


def augment_maze(inputs: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                 relabel: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One of the 8 rotations/reflections of the square grid, applied to inputs and labels (n,) together.

    Where shortest paths tie, the turned label is replaced by the path TIE_ORDER picks in the turned maze, so every
    training label follows one rule (a turned label follows a turned rule, which no model can tell from the maze).
    A maze with a unique shortest path keeps its turned label as it is; so does every maze with relabel=False.
    """
    k = int(rng.integers(8))
    turned = dihedral(inputs, k)
    if not relabel:
        return turned, dihedral(labels, k)
    path, unique = shortest_path(turned, math.isqrt(inputs.shape[0]))
    return turned, dihedral(labels, k) if unique else label_path(turned, path)


def check_maze(inputs: np.ndarray, labels: np.ndarray, size: int) -> Optional[str]:
    """What is wrong with a maze and its label, or None: one S and one G, labels = inputs except open cells
    marked `o`, and the `o` cells form a shortest S->G path."""
    if inputs.shape != (size * size,) or labels.shape != inputs.shape:
        return f"the maze has {inputs.size} cells and its label {labels.size}, expected {size * size}"
    if not np.isin(inputs, (WALL, OPEN, START, GOAL)).all() or not np.isin(labels, list(TOKEN.values())).all():
        return f"the maze uses tokens outside {CHARS!r} (the question may not contain 'o')"
    if (inputs == START).sum() != 1 or (inputs == GOAL).sum() != 1:
        return f"the maze has {(inputs == START).sum()} S and {(inputs == GOAL).sum()} G cells, expected one each"
    marked = labels == PATH
    if not np.array_equal(np.where(marked, OPEN, labels), inputs):
        return "the answer differs from the question in cells other than open cells marked 'o'"
    path, _ = shortest_path(inputs, size)
    if path is None:
        return "G cannot be reached from S"
    on_path = list((inputs == START) | (inputs == GOAL) | marked)
    dist, _, _ = bfs(on_path, size, int(np.flatnonzero(inputs == START)[0]))
    if int(marked.sum()) != len(path) - 2 or dist[int(np.flatnonzero(inputs == GOAL)[0])] != len(path) - 1:
        return f"the 'o' cells ({int(marked.sum())}) are not a shortest S->G path ({len(path) - 2} cells between)"
    return None
