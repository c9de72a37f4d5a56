"""Maze generators: corridors with a unique shortest start-goal path, or Maze-Hard's open terrain.

Speed (one core, CPython 3.11): 100 corridor mazes of 30x30 with min_path=110 in ~0.1 s (path 110-290 moves,
mean ~154); with openings=0.03, ~0.1 s (mean ~124). Larger openings make ties likely: no unique long path.
Open 30x30 mazes with min_path=110: ~0.4-0.7 s each (about 500 layouts drawn per maze kept; path mean ~112),
made in parallel over up to 16 processes.

Letters: n = size * size cells, N mazes.
"""

from __future__ import annotations

import logging
import os
import random
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from typing import Literal, Optional, get_args

import numpy as np
from tqdm.auto import tqdm

from ember.data_modules.maze_paths import GOAL, OPEN, PATH, START, WALL, bfs, label_path, shortest_path
from ember.data_modules.puzzles import PuzzleSet
from ember.errors import EmberConfigError

log = logging.getLogger(__name__)


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


Style = Literal["corridors", "open"]
STYLES = get_args(Style)


def _scatter(rng: random.Random, size: int, wall_prob: float) -> list[bool]:
    """Open terrain (Maze-Hard's kind): every cell a wall with probability wall_prob."""
    return [rng.random() >= wall_prob for _ in range(size * size)]


def generate_maze(rng: random.Random, size: int = 30, min_path: int = 110, openings: float = 0.0,
                  tries: Optional[int] = None, style: Style = "corridors",
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


def _maze_at(k: int, name: str, stream: str, seed: int, size: int, min_path: int, openings: float, style: Style,
             wall_prob: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Maze k of a stream: its own random generator, so any process makes the same maze."""
    rng = random.Random(f"{name}/{stream}/{seed}/{k}")
    return generate_maze(rng, size, min_path, openings, style=style, wall_prob=wall_prob)


def generate_mazes(count: int, seed: int = 0, size: int = 30, min_path: int = 110, openings: float = 0.0,
                   stream: str = "train", style: Style = "corridors", wall_prob: tuple[float, float] = (0.30, 0.45),
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
    # the arrays first: a count that cannot fit fails now (MemoryError), not after hours of generating
    inputs, labels = np.zeros((count, size * size), np.uint8), np.zeros((count, size * size), np.uint8)
    if processes > 1:
        with ProcessPoolExecutor(processes) as pool:  # fork on Linux, as DataLoader workers
            for k, (x, y) in enumerate(progress(pool.map(make, range(count), chunksize=4))):
                inputs[k], labels[k] = x, y
    else:
        for k in progress(range(count)):
            inputs[k], labels[k] = make(k)
    if count:
        lengths = (labels == PATH).sum(1) + 1
        log.info("generated %d %dx%d %s mazes (%s, seed %d): shortest path mean %.1f, min %d, max %d moves",
                 count, size, size, style, stream, seed, lengths.mean(), lengths.min(), lengths.max())
    return PuzzleSet(inputs, labels)
