"""MazeData: maze path finding for TRM/HRM, from generated mazes or the HRM Maze-Hard files.

The pieces live beside it: data_modules/maze_paths.py (tokens, shortest paths, TIE_ORDER, symmetries, checks),
maze_generate.py (generators) and maze_files.py (CSV and npy readers); their public names are importable
from here too.

Letters: b batch, n = size * size cells.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Optional

import numpy as np

from ember.data_modules.maze_files import read_mazes
from ember.data_modules.maze_generate import STYLES, Style, generate_maze, generate_mazes
from ember.data_modules.maze_paths import (
    CHARS,
    GOAL,
    OPEN,
    PATH,
    START,
    TIE_ORDER,
    TOKEN,
    WALL,
    augment_maze,
    bfs,
    check_maze,
    dihedral,
    label_path,
    shortest_path,
    shortest_steps,
)
from ember.data_modules.puzzles import PuzzleData, PuzzleSet, cached, file_digest
from ember.errors import EmberConfigError, EmberDataError

__all__ = ["CHARS", "GOAL", "OPEN", "PATH", "START", "STYLES", "TIE_ORDER", "TOKEN", "WALL", "MazeData", "Style",
           "augment_maze", "bfs", "check_maze", "dihedral", "generate_maze", "generate_mazes", "label_path",
           "read_mazes", "shortest_path", "shortest_steps"]

log = logging.getLogger(__name__)
MAX_SIZE = 1024  # a side of more cells (a sequence of over a million) is a typo: generating it would not end


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
            teach a tie-break that solves about none of the Maze-Hard test mazes (benchmarks/reproduce/maze_ties.py). An
            ablation (BENCHMARKS section 8); true is right.
        batch_size: mazes per batch (per device).
        seed: seed of the generated mazes (train, val and test use separate streams), augmentations, shuffling.
        num_workers: DataLoader worker processes.
        cache_dir: folder of the npz cache of generated and parsed sets (null: no cache).
    """

    name = "maze"
    vocab_size = 6

    def __init__(self, size: int = 30, min_path: int = 110, style: Style = "corridors", openings: float = 0.0,
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
        if not 3 <= size <= MAX_SIZE or min_path < 1 or not 0.0 <= openings <= 1.0:
            raise EmberConfigError(f"size={size} must be in 3..{MAX_SIZE}, min_path={min_path} >= 1 and openings="
                                   f"{openings} in [0, 1]")
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
