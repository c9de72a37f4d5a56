"""Maze for TRM/HRM: generators of mazes (corridors with a unique shortest start-goal path, or Maze-Hard's open
terrain), BFS, the 8 dihedral augmentations, a reader of the HRM Maze-Hard files (CSV or npy), and `MazeData`.

Grids are size x size cells in row-major order, token ids as HRM: 0 = pad (unused), 1 = `#` wall,
2 = ` ` open, 3 = `S` start, 4 = `G` goal, 5 = `o` path (labels only). The label is the input with the
open cells of the shortest S->G path marked `o`; where shortest paths tie, of the one TIE_ORDER picks.

Speed (one core, CPython 3.11): 100 corridor mazes of 30x30 with min_path=110 in ~0.1 s (path 110-290 moves,
mean ~154); with openings=0.03, ~0.1 s (mean ~124). Larger openings make ties likely: no unique long path.
Open 30x30 mazes with min_path=110: ~0.4-0.7 s each (about 500 layouts drawn per maze kept; path mean ~112),
made in parallel over up to 16 processes.

Letters: b batch, n = size * size cells, N mazes.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import random
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Optional

import numpy as np
from tqdm.auto import tqdm

from ember.data_modules.puzzles import PuzzleData, PuzzleSet, cached, file_digest
from ember.errors import EmberConfigError, EmberDataError

log = logging.getLogger(__name__)

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
# has ties; about 20 forks per maze; tests/test_puzzles.py reproduces the labels), so a rotated or mirrored maze must be
# labelled afresh, not rotated with its label: its rotated path follows another rule (BENCHMARKS section 8).
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


def _carve(rng: random.Random, size: int) -> list[bool]:
    """A perfect maze (randomized depth-first search): rooms at even (row, col), passages between them."""
    rooms = (size + 1) // 2
    passable = [False] * (size * size)
    first = (rng.randrange(rooms), rng.randrange(rooms))
    seen, stack = {first}, [first]
    passable[2 * first[0] * size + 2 * first[1]] = True
    while stack:
        r, c = stack[-1]
        options = [(r + dr, c + dc) for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1))
                   if 0 <= r + dr < rooms and 0 <= c + dc < rooms and (r + dr, c + dc) not in seen]
        if not options:
            stack.pop()
            continue
        nr, nc = rng.choice(options)
        passable[(r + nr) * size + (c + nc)] = True  # the passage between the two rooms
        passable[2 * nr * size + 2 * nc] = True
        seen.add((nr, nc))
        stack.append((nr, nc))
    return passable


def _open_walls(rng: random.Random, passable: list[bool], size: int, openings: float):
    """Knock out a fraction of the walls between two rooms (adds loops: shortest paths may then tie)."""
    walls = [r * size + c for r in range(size) for c in range(size) if not passable[r * size + c] and (r + c) % 2
             and (r % 2 == 0 and 0 < c < size - 1 and passable[r * size + c + 1]
                  or c % 2 == 0 and 0 < r < size - 1 and passable[(r + 1) * size + c])]
    for i in rng.sample(walls, round(openings * len(walls))):
        passable[i] = True


STYLES = ("corridors", "open")


def _scatter(rng: random.Random, size: int, wall_prob: float) -> list[bool]:
    """Open terrain (Maze-Hard's kind): every cell a wall with probability wall_prob."""
    return [rng.random() >= wall_prob for _ in range(size * size)]


def generate_maze(rng: random.Random, size: int = 30, min_path: int = 110, openings: float = 0.0,
                  tries: Optional[int] = None, style: str = "corridors",
                  wall_prob: tuple[float, float] = (0.30, 0.45)) -> tuple[np.ndarray, np.ndarray]:
    """A maze whose shortest S->G path is at least min_path moves: (inputs, labels), (size*size,) uint8.

    style "corridors": a perfect maze (depth-first carving), optionally with loops (openings: fraction of inner walls
    removed), kept only where the shortest path is unique. style "open": Maze-Hard's kind, each cell a wall with a
    probability drawn uniformly from wall_prob (the default (0.30, 0.45) matches Maze-Hard's wall share, 0.37 +- 0.03,
    once min_path=110 has filtered the layouts); its shortest paths tie, and the label takes TIE_ORDER's.
    S is a random open cell and G a random open cell at least min_path moves from it. tries: layouts drawn before
    giving up (default 50 corridors, 20000 open: at 30x30 and min_path=110 about 1 open layout in 500 qualifies).
    """
    if style not in STYLES:
        raise EmberConfigError(f"style={style!r}: use one of {STYLES}")
    tries = tries or (50 if style == "corridors" else 20000)
    for _ in range(tries):
        if style == "open":
            passable = _scatter(rng, size, rng.uniform(*wall_prob))
        else:
            passable = _carve(rng, size)
            if openings > 0:
                _open_walls(rng, passable, size, openings)
        cells = [i for i, ok in enumerate(passable) if ok]
        for _ in range(4 if cells else 0):
            start = rng.choice(cells)
            dist, count, _ = bfs(passable, size, start)
            goals = [i for i in cells if dist[i] >= min_path and (count[i] == 1 or style == "open")]
            if goals:
                goal = rng.choice(goals)
                inputs = np.where(passable, OPEN, WALL).astype(np.uint8)
                inputs[start], inputs[goal] = START, GOAL
                path, _ = shortest_path(inputs, size)
                assert path is not None and len(path) - 1 == dist[goal]
                return inputs, label_path(inputs, path)
    kind = "a unique shortest path" if style == "corridors" else "a shortest path"
    raise EmberConfigError(f"found no {size}x{size} {style} maze with {kind} of >= {min_path} moves in {tries} tries "
                           f"(openings={openings}, wall_prob={wall_prob}): lower min_path or openings, or raise size")


def _maze_at(k: int, name: str, stream: str, seed: int, size: int, min_path: int, openings: float, style: str,
             wall_prob: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Maze k of a stream: its own random generator, so any process makes the same maze."""
    rng = random.Random(f"{name}/{stream}/{seed}/{k}")
    return generate_maze(rng, size, min_path, openings, style=style, wall_prob=wall_prob)


def generate_mazes(count: int, seed: int = 0, size: int = 30, min_path: int = 110, openings: float = 0.0,
                   stream: str = "train", style: str = "corridors", wall_prob: tuple[float, float] = (0.30, 0.45),
                   processes: Optional[int] = None) -> PuzzleSet:
    """count mazes as tokens; maze i depends on (seed, stream, i) only (and the style's stream for "open").

    processes: worker processes (default: one per CPU, at most 16, for 64 or more open mazes, which cost ~0.5 s
    each at 30x30; else 1). The mazes are the same whatever the number.
    """
    name = "maze" if style == "corridors" else f"maze-{style}"  # corridors keep the streams they always had
    if processes is None:
        processes = min(os.cpu_count() or 1, 16) if style == "open" and count >= 64 else 1
    make = partial(_maze_at, name=name, stream=stream, seed=seed, size=size, min_path=min_path, openings=openings,
                   style=style, wall_prob=wall_prob)
    progress = partial(tqdm, total=count, desc=f"generating {style} mazes ({stream})", disable=None, leave=False)
    if processes > 1:
        with ProcessPoolExecutor(processes) as pool:  # fork on Linux, as DataLoader workers
            mazes = list(progress(pool.map(make, range(count), chunksize=4)))
    else:
        mazes = [make(k) for k in progress(range(count))]
    shape = (count, size * size)
    inputs = np.stack([x for x, _ in mazes]) if mazes else np.zeros(shape, np.uint8)
    labels = np.stack([y for _, y in mazes]) if mazes else np.zeros(shape, np.uint8)
    if count:
        lengths = (labels == PATH).sum(1) + 1
        log.info("generated %d %dx%d %s mazes (%s, seed %d): shortest path mean %.1f, min %d, max %d moves",
                 count, size, size, style, stream, seed, lengths.mean(), lengths.min(), lengths.max())
    return PuzzleSet(inputs, labels)


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


def _decode(text: str, where: str, size: int) -> np.ndarray:
    if len(text) != size * size or any(ch not in TOKEN for ch in text):
        bad = sorted({ch for ch in text if ch not in TOKEN})
        problem = f"has {len(text)} characters" if len(text) != size * size else f"has the characters {bad}"
        raise EmberDataError(f"{where}: the grid {problem}; a {size}x{size} maze is {size * size} characters of "
                             f"{CHARS!r} in row-major order: fix or delete that row, or set size to the file's")
    return np.frombuffer(text.translate({ord(ch): k for ch, k in TOKEN.items()}).encode("latin-1"), np.uint8)


def _read_csv(file: Path, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    with open(file, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        if header[:2] != ["question", "answer"]:
            raise EmberDataError(f"{file}:1: the CSV header is {header}: the first line must be 'question,answer'")
        rows, places = [], []
        for row in reader:
            where = f"{file}:{reader.line_num}"
            if len(row) < 2:
                raise EmberDataError(f"{where}: the row has {len(row)} fields, expected question,answer")
            rows.append((_decode(row[0], where, size), _decode(row[1], where, size)))
            places.append(where)
    inputs = np.stack([q for q, _ in rows]) if rows else np.zeros((0, size * size), np.uint8)
    labels = np.stack([a for _, a in rows]) if rows else np.zeros((0, size * size), np.uint8)
    return inputs, labels, places


def _read_npy(file: Path, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    folder = file if file.is_dir() else file.parent
    inputs_file, labels_file = folder / "all__inputs.npy", folder / "all__labels.npy"
    if not inputs_file.is_file() or not labels_file.is_file():
        raise EmberDataError(f"{folder} lacks all__inputs.npy or all__labels.npy: point at an HRM split folder "
                             "(e.g. maze_hard_30x30_1k/train) or a question,answer CSV")
    inputs, labels = np.load(inputs_file), np.load(labels_file)
    if inputs.ndim != 2 or inputs.shape != labels.shape or inputs.shape[1] != size * size:
        raise EmberDataError(f"{inputs_file}: inputs {inputs.shape} and labels {labels.shape} must both be "
                             f"(N, {size * size}) for size={size}: set size to the file's grid size")
    return inputs.astype(np.uint8), labels.astype(np.uint8), [f"{inputs_file} row {k}" for k in range(len(inputs))]


def read_mazes(path: str | Path, size: int = 30, limit: Optional[int] = None) -> PuzzleSet:
    """Mazes of a `question,answer` CSV (strings over '# SGo') or an HRM npy split folder (all__inputs.npy,
    all__labels.npy). Each is checked (check_maze); EmberDataError names the file and row of the first bad one."""
    file = Path(path).expanduser()
    if not file.exists():
        raise EmberDataError(f"maze data {file} does not exist: give a question,answer CSV or an HRM split folder "
                             "holding all__inputs.npy and all__labels.npy")
    read = _read_csv if file.is_file() and file.suffix.lower() == ".csv" else _read_npy
    inputs, labels, places = read(file, size)
    inputs, labels = inputs[:limit], labels[:limit]
    for k in range(len(inputs)):
        problem = check_maze(inputs[k], labels[k], size)
        if problem is not None:
            raise EmberDataError(f"{places[k]}: {problem}: fix or delete that maze")
    log.info("read %d %dx%d mazes from %s", len(inputs), size, size, file)
    return PuzzleSet(inputs, labels)


class MazeData(PuzzleData):
    """Maze path finding (TRM/HRM Maze-Hard): generated mazes (corridors or Maze-Hard's open kind), or HRM files.

    Batches: {"inputs": (b, size*size) int64 maze tokens, "labels": (b, size*size) int64 with the shortest
    S->G path marked}; ids 0 pad, 1 `#`, 2 ` `, 3 `S`, 4 `G`, 5 `o` (vocab_size 6). An epoch is train_size
    mazes, each under a random rotation/reflection, its path relabelled by TIE_ORDER where shortest paths tie.

    Args:
        size: grid side (seq_len = size * size; 30 for Maze-Hard, whose files must match it).
        min_path: generated mazes have a shortest S->G path of at least this many moves (Maze-Hard: 110).
        style: generated mazes are "corridors" (perfect mazes by depth-first carving, unique shortest path) or
            "open" (Maze-Hard's kind: scattered walls, tied shortest paths labelled by TIE_ORDER; about 0.5 s a
            30x30 maze to generate, on every CPU up to 16, cached).
        openings: corridors only: fraction of the inner walls removed to add loops (0: a tree; a maze is
            kept only if its shortest path stays unique; above ~0.05 ties make long unique paths rare).
        wall_prob: open only: each maze's wall probability is drawn uniformly from this range.
        train_size: training mazes (generated, or the first train_size of train_path).
        val_size: validation mazes (generated, or the first val_size of val_path).
        test_size: generated test mazes (ignored with eval_path, whose mazes are the test set).
        train_path: train on a question,answer CSV or an HRM npy split folder instead of generated mazes.
        val_path: validate on a question,answer CSV or HRM npy split folder instead of generated mazes (not
            the eval_path file: best.ckpt is chosen on validation).
        eval_path: test on a question,answer CSV or HRM npy split folder instead of generated mazes.
        eval_limit: read only the first eval_limit mazes of eval_path (null: all).
        augment: augment training mazes on the fly (the 8 dihedral symmetries; tied paths relabelled by
            TIE_ORDER, so a train_path file whose labels break ties otherwise is trained on TIE_ORDER's paths,
            with a warning).
        relabel_ties: false turns a tied label with its maze instead of relabelling it, so 6 of the 8 symmetries
            teach a tie-break that solves about none of the Maze-Hard test mazes (benchmarks/maze_ties.py). An
            ablation (BENCHMARKS section 8); true is right.
        batch_size: mazes per batch (per device).
        seed: seed of the generated mazes (train, val and test use separate streams), augmentations, shuffling.
        num_workers: DataLoader worker processes.
        cache_dir: folder of the npz cache of generated and parsed sets (null: no cache).
    """

    name = "maze"
    vocab_size = 6

    def __init__(self, size: int = 30, min_path: int = 110, style: str = "corridors", openings: float = 0.0,
                 wall_prob: tuple[float, float] = (0.30, 0.45), train_size: int = 1000,
                 val_size: int = 100, test_size: int = 1000, train_path: Optional[str] = None,
                 val_path: Optional[str] = None, eval_path: Optional[str] = None, eval_limit: Optional[int] = None,
                 augment: bool = True, relabel_ties: bool = True, batch_size: int = 64, seed: int = 0,
                 num_workers: int = 0, cache_dir: Optional[str] = "runs/cache"):
        super().__init__(batch_size=batch_size, augment=augment, seed=seed, num_workers=num_workers,
                         cache_dir=cache_dir)
        if min(train_size, val_size, test_size) < 1 or (eval_limit is not None and eval_limit < 1):
            raise EmberConfigError(f"train_size={train_size}, val_size={val_size}, test_size={test_size} and "
                                   f"eval_limit={eval_limit} must be >= 1 (eval_limit null reads the whole file)")
        if size < 3 or min_path < 1 or not 0.0 <= openings <= 1.0:
            raise EmberConfigError(f"size={size} must be >= 3, min_path={min_path} >= 1 and openings={openings} "
                                   "in [0, 1]")
        if min_path > size * size // 2:
            raise EmberConfigError(f"min_path={min_path} is longer than any path in a {size}x{size} maze "
                                   f"(at most ~{size * size // 2} moves): lower min_path or raise size")
        if style not in STYLES:
            raise EmberConfigError(f"style={style!r}: use one of {STYLES}")
        if not 0.0 <= wall_prob[0] <= wall_prob[1] < 1.0:
            raise EmberConfigError(f"wall_prob={wall_prob} must be a range (low, high) with 0 <= low <= high < 1")
        self.size, self.min_path, self.openings, self.seq_len = size, min_path, openings, size * size
        self.style, self.wall_prob = style, tuple(wall_prob)
        self.augment_pair = partial(augment_maze, relabel=relabel_ties)  # picklable for DataLoader workers
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.train_path, self.val_path, self.eval_path, self.eval_limit = train_path, val_path, eval_path, eval_limit

    augment_pair = staticmethod(augment_maze)

    def build(self, split: str) -> PuzzleSet:
        path, limit = self.split_file(split)
        if path is None:
            params = {"name": self.name, "split": split, "count": self.sizes[split], "seed": self.seed,
                      "size": self.size, "min_path": self.min_path, "openings": self.openings}
            if self.style != "corridors":
                params.update(style=self.style, wall_prob=list(self.wall_prob))
            return cached(self.cache_dir, params, lambda: generate_mazes(
                self.sizes[split], self.seed, self.size, self.min_path, self.openings, split, self.style,
                self.wall_prob))
        data = self._read(path, limit)
        if split == "train" and self.augment:
            _warn_other_tie_breaks(data, self.size, path)
        return data

    def _read(self, path: str, limit: Optional[int]) -> PuzzleSet:
        file = Path(path).expanduser()
        if not file.exists():
            raise EmberDataError(f"maze data {file} does not exist: give a question,answer CSV or an HRM split "
                                 "folder holding all__inputs.npy and all__labels.npy, or null to generate mazes")
        source = file / "all__inputs.npy" if file.is_dir() else file
        params = {"name": self.name, "split": "file", "file": file.name, "size": self.size, "limit": limit,
                  "sha256": file_digest(source) if source.is_file() else None}
        return cached(self.cache_dir, params, lambda: read_mazes(file, self.size, limit))


def _warn_other_tie_breaks(data: PuzzleSet, size: int, path: str):
    """Augmentation relabels tied paths by TIE_ORDER: say so where a training file's own labels differ from it."""
    other = sum(not np.array_equal(label_path(x, shortest_path(x, size)[0]), y) for x, y in zip(*data))
    if other:
        log.warning("%d of %d training mazes in %s are labelled with another shortest path than TIE_ORDER's (%s at "
                    "every fork); augmentation trains on TIE_ORDER's paths: set data.init_args.augment false to train "
                    "on the file's labels", other, len(data.inputs), path, TIE_ORDER)
