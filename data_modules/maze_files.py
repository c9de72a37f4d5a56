"""Reading mazes from files: a `question,answer` CSV of strings over '# SGo', or an HRM npy split folder
(all__inputs.npy, all__labels.npy), every maze checked.

Letters: n = size * size cells, N mazes.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Optional

import numpy as np

from ember.data_modules.maze_paths import CHARS, TOKEN, check_maze
from ember.data_modules.puzzles import PuzzleSet, reading_text
from ember.errors import EmberDataError

log = logging.getLogger(__name__)


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
    with reading_text(file, f"a maze file holds a question,answer header and grids of {CHARS!r}"):
        inputs, labels, places = read(file, size)
    inputs, labels = inputs[:limit], labels[:limit]
    for k in range(len(inputs)):
        problem = check_maze(inputs[k], labels[k], size)
        if problem is not None:
            raise EmberDataError(f"{places[k]}: {problem}: fix or delete that maze")
    log.info("read %d %dx%d mazes from %s", len(inputs), size, size, file)
    return PuzzleSet(inputs, labels)
