"""Sudoku for TRM/HRM: a bitmask solver, a unique-solution generator, the TRM augmentations,
a reader of tdoku text/CSV files, and `SudokuData`.

Grids are 81 cells in row-major order. The solver and generator work on digit lists
(0 = blank, 1..9 = digit); the model sees token ids: 0 = pad (unused), 1 = blank, 2..10 = digits
1..9 (token = digit + 1). Inputs are the puzzle, labels the full solution in the same ids.

Speed (one core, CPython 3.11): `generate_sudoku` makes 1000 puzzles in ~12 s with min_clues=17 (greedy
removal stops at 21-27 clues, mean ~24; 2.5 s with min_clues=30). `count_solutions` takes ~15 ms on average,
<0.06 s at worst, on the forum_hardest_1905_11+ puzzles and ~1 ms on the 17-clue ones.

Letters: b batch, n = 81 cells, N puzzles.
"""

from __future__ import annotations

import csv
import logging
import random
from pathlib import Path
from typing import Optional

import numpy as np

from ember.data_modules.puzzles import PuzzleData, PuzzleSet, cached, file_digest, reading_text
from ember.errors import EmberConfigError, EmberDataError

log = logging.getLogger(__name__)

BLANK_ID = 1  # token of an empty cell; digit d is token d + 1
ALL = 0x1FF  # the nine candidate bits
ROW = [i // 9 for i in range(81)]
COL = [i % 9 for i in range(81)]
BOX = [(i // 27) * 3 + (i % 9) // 3 for i in range(81)]
POPCOUNT = [bin(m).count("1") for m in range(512)]
BITS = [[1 << d for d in range(9) if m >> d & 1] for m in range(512)]  # the set bits of each mask
DIGIT = {1 << d: d + 1 for d in range(9)}
UNITS = ([[r * 9 + c for c in range(9)] for r in range(9)] + [[r * 9 + c for r in range(9)] for c in range(9)]
         + [[i for i in range(81) if BOX[i] == b] for b in range(9)])


def _hidden_single(candidates: dict[int, int]) -> tuple[int, int]:
    """(cell, bit) of a digit with one place left in some row, column or box: (-1, 0) if none, (-2, 0) if a
    cell is the only place of two digits (a dead end). candidates: cell -> candidate bits of every empty cell."""
    for unit in UNITS:
        once = twice = 0
        for i in unit:
            bits = candidates.get(i, 0)
            twice |= once & bits
            once |= bits
        single = once & ~twice
        if single:
            for i in unit:
                bits = candidates.get(i, 0) & single
                if bits:
                    return (i, bits) if POPCOUNT[bits] == 1 else (-2, 0)
    return -1, 0


def _masks(grid: list[int]) -> Optional[tuple[list[int], list[int], list[int], list[int]]]:
    """(row, column, box digit bitmasks, empty cells) of a digit grid; None when two givens clash."""
    rows, cols, boxes, empties = [0] * 9, [0] * 9, [0] * 9, []
    for i, v in enumerate(grid):
        if not v:
            empties.append(i)
            continue
        bit, r, c, x = 1 << (v - 1), ROW[i], COL[i], BOX[i]
        if (rows[r] | cols[c] | boxes[x]) & bit:
            return None
        rows[r] |= bit
        cols[c] |= bit
        boxes[x] |= bit
    return rows, cols, boxes, empties


def _next_cell(empties: list[int], k: int, rows: list[int], cols: list[int], boxes: list[int],
               ban: dict[int, int]) -> tuple[int, int, int]:
    """The cell to fill next among empties[k:]: a naked single, else a hidden single, else the most-constrained
    cell. Returns (its position j in empties, its candidate bits, their count); count 0 at a dead end."""
    best_j, best, best_count, candidates = k, 0, 10, {}
    for j in range(k, len(empties)):
        i = empties[j]
        cand = ALL & ~(rows[ROW[i]] | cols[COL[i]] | boxes[BOX[i]])
        if ban and i in ban:
            cand &= ~ban[i]
        count = POPCOUNT[cand]
        if count < best_count:
            best_j, best, best_count = j, cand, count
            if count <= 1:
                break
        candidates[i] = cand
    if best_count > 1:  # no naked single: look for a hidden one
        cell, bit = _hidden_single(candidates)
        if cell == -2:
            return k, 0, 0
        if cell >= 0:
            return empties.index(cell, k), bit, 1
    return best_j, best, best_count


def _search(grid: list[int], limit: int, ban: Optional[dict[int, int]] = None,
            rng: Optional[random.Random] = None) -> tuple[int, Optional[list[int]]]:
    """Backtracking over row/column/box bitmasks, filling the cell _next_cell picks first.

    Returns (number of solutions found, capped at limit; the first solution or None). ban maps a
    cell to digit bits it may not take; rng shuffles the digit order (random full grids).
    """
    masks = _masks(grid)
    if masks is None:
        return 0, None
    rows, cols, boxes, empties = masks
    cells, ban, n = list(grid), ban or {}, len(empties)
    found: list = [0, None]

    def descend(k: int) -> bool:  # fill empties[k:]; True once limit solutions are found
        if k == n:
            found[0] += 1
            found[1] = found[1] or list(cells)
            return found[0] >= limit
        best_j, best, best_count = _next_cell(empties, k, rows, cols, boxes, ban)
        if best_count == 0:
            return False
        empties[k], empties[best_j] = empties[best_j], empties[k]
        i = empties[k]
        r, c, x = ROW[i], COL[i], BOX[i]
        bits = BITS[best]
        if rng is not None and best_count > 1:
            bits = bits[:]
            rng.shuffle(bits)
        done = False
        for bit in bits:
            rows[r] |= bit
            cols[c] |= bit
            boxes[x] |= bit
            cells[i] = DIGIT[bit]
            done = descend(k + 1)
            rows[r] ^= bit
            cols[c] ^= bit
            boxes[x] ^= bit
            if done:
                break
        cells[i] = 0
        empties[k], empties[best_j] = empties[best_j], empties[k]
        return done

    descend(0)
    return found[0], found[1]


def count_solutions(grid: list[int], limit: int = 2) -> int:
    """Number of solutions of a digit grid (81 ints, 0 = blank), counted up to limit."""
    return _search(list(grid), limit)[0]


def solve(grid: list[int]) -> Optional[list[int]]:
    """The first solution of a digit grid, or None when it has none."""
    return _search(list(grid), 1)[1]


def check_pair(puzzle: list[int], solution: list[int]) -> Optional[str]:
    """What is wrong with a (puzzle, solution) digit pair, or None when the solution is valid and fits the givens."""
    for unit in range(9):
        for name, cells in (("row", [unit * 9 + k for k in range(9)]), ("column", [k * 9 + unit for k in range(9)]),
                            ("box", [i for i in range(81) if BOX[i] == unit])):
            if sorted(solution[i] for i in cells) != list(range(1, 10)):
                return f"{name} {unit + 1} of the solution is not a permutation of 1-9"
    for i, (given, digit) in enumerate(zip(puzzle, solution)):
        if given and given != digit:
            return f"the solution has {digit} at row {i // 9 + 1}, column {i % 9 + 1} where the puzzle gives {given}"
    return None


def generate_puzzle(rng: random.Random, min_clues: int = 17) -> tuple[list[int], list[int], int]:
    """A random puzzle with a unique solution: (puzzle, solution, clues), digit lists.

    A random full grid, then each given in random order is blanked unless the puzzle would gain a
    second solution (checked as: no solution with that cell != its digit), stopping at min_clues.
    """
    solution = _search([0] * 81, 1, rng=rng)[1]
    assert solution is not None  # the empty grid always has a solution
    puzzle, clues = list(solution), 81
    order = list(range(81))
    rng.shuffle(order)
    for i in order:
        if clues <= min_clues:
            break
        digit, puzzle[i] = puzzle[i], 0
        if _search(puzzle, 1, ban={i: 1 << (digit - 1)})[0]:
            puzzle[i] = digit  # another solution exists without this given
        else:
            clues -= 1
    return puzzle, solution, clues


def generate_sudoku(count: int, seed: int = 0, min_clues: int = 17, stream: str = "train") -> PuzzleSet:
    """count puzzles as tokens; puzzle i depends on (seed, stream, i) only, so sets of other sizes share prefixes."""
    inputs, labels = np.zeros((count, 81), np.uint8), np.zeros((count, 81), np.uint8)
    clues = np.zeros(count, np.int64)
    for k in range(count):
        puzzle, solution, clues[k] = generate_puzzle(random.Random(f"sudoku/{stream}/{seed}/{k}"), min_clues)
        inputs[k], labels[k] = np.asarray(puzzle) + 1, np.asarray(solution) + 1
    if count:
        log.info("generated %d sudoku puzzles (%s, seed %d): clues mean %.1f, min %d, max %d (min_clues=%d)",
                 count, stream, seed, clues.mean(), clues.min(), clues.max(), min_clues)
    return PuzzleSet(inputs, labels)


def sudoku_symmetry(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random validity-preserving symmetry (TRM/HRM): (token_map (11,), source (81,)).

    token_map relabels the digits (pad and blank stay); source[i] is the old cell that new cell i takes:
    bands, stacks, rows within each band and columns within each stack permuted, transposed with prob. 1/2.
    """
    token_map = np.concatenate([[0, BLANK_ID], rng.permutation(9) + 2])
    rows = (rng.permutation(3)[:, None] * 3 + np.stack([rng.permutation(3) for _ in range(3)])).reshape(9)
    cols = (rng.permutation(3)[:, None] * 3 + np.stack([rng.permutation(3) for _ in range(3)])).reshape(9)
    source = rows[:, None] * 9 + cols[None, :]  # (9, 9): new cell (r, c) takes old cell (rows[r], cols[c])
    if rng.random() < 0.5:
        source = source.T
    return token_map, source.reshape(81)


def augment_sudoku(inputs: np.ndarray, labels: np.ndarray,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """inputs, labels: (81,) token ids, transformed together by one sudoku_symmetry."""
    token_map, source = sudoku_symmetry(rng)
    return token_map[inputs[source]].astype(inputs.dtype), token_map[labels[source]].astype(labels.dtype)


def _parse_grid(text: str, where: str, solution: bool = False) -> list[int]:
    allowed = "123456789" if solution else "123456789.0"
    what = "solution" if solution else "puzzle"
    if len(text) != 81 or any(ch not in allowed for ch in text):
        bad = sorted({ch for ch in text if ch not in allowed})
        problem = f"has {len(text)} characters" if len(text) != 81 else f"has the characters {bad}"
        form = "'1'-'9'" if solution else "'1'-'9' givens and '.' blanks"
        raise EmberDataError(f"{where}: the {what} {problem}; a {what} is 81 characters of {form} in row-major "
                             "order: fix or delete that line")
    return [0 if ch in ".0" else int(ch) for ch in text]


def _read_rows(file: Path) -> list[tuple[int, str, Optional[str]]]:
    """(line number, puzzle text, solution text or None) of a tdoku text file or a puzzle,solution CSV."""
    if file.suffix.lower() != ".csv":
        rows = []
        for number, line in enumerate(file.read_text().splitlines(), start=1):
            line = line.strip()
            if line and not line.startswith("#"):
                rows.append((number, line, None))
        return rows
    with open(file, newline="") as f:
        reader = csv.reader(f)
        header = [name.strip() for name in next(reader, [])]
        if "puzzle" not in header:
            raise EmberDataError(f"{file}:1: the CSV header is {header}, with no 'puzzle' column: the first line "
                                 "must be 'puzzle,solution' (or 'puzzle')")
        p, s = header.index("puzzle"), header.index("solution") if "solution" in header else None
        return [(reader.line_num, row[p].strip(), row[s].strip() if s is not None and s < len(row) else None)
                for row in reader if row]


def read_sudoku(path: str | Path, limit: Optional[int] = None) -> PuzzleSet:
    """Puzzles of a tdoku text file (one 81-char puzzle a line, '#' comments) or a CSV with header
    `puzzle,solution`; missing solutions are solved. Every puzzle must have exactly one solution.

    Raises EmberDataError naming the file and line of the first bad puzzle. limit: read the first N only.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise EmberDataError(f"sudoku file {file} does not exist: give a tdoku .txt file (81 chars a line) or a "
                             "CSV with header puzzle,solution")
    with reading_text(file, "a puzzle file holds digits, '.', commas and a header"):
        rows = _read_rows(file)[:limit]
    inputs, labels = np.zeros((len(rows), 81), np.uint8), np.zeros((len(rows), 81), np.uint8)
    for k, (number, text, solution_text) in enumerate(rows):
        where = f"{file}:{number}"
        puzzle = _parse_grid(text, where)
        count, first = _search(puzzle, 2)
        if count != 1:
            raise EmberDataError(f"{where}: the puzzle has {'no' if count == 0 else 'two or more'} solutions; "
                                 "supervised training needs exactly one: fix or delete that line")
        if solution_text:
            solution = _parse_grid(solution_text, where, solution=True)
            problem = check_pair(puzzle, solution)
            if problem is not None:
                raise EmberDataError(f"{where}: {problem}: fix the solution or leave the column empty to have it "
                                     "solved")
        inputs[k], labels[k] = np.asarray(puzzle) + 1, np.asarray(first) + 1
    log.info("read %d sudoku puzzles from %s", len(rows), file)
    return PuzzleSet(inputs, labels)


class SudokuData(PuzzleData):
    """9x9 Sudoku (TRM/HRM): generated puzzles with unique solutions, or tdoku files, augmented on the fly.

    Batches: {"inputs": (b, 81) int64 puzzle tokens, "labels": (b, 81) int64 solution tokens}; ids 0 pad,
    1 blank, 2..10 digits 1..9 (vocab_size 11). An epoch is train_size puzzles, each under a new random
    symmetry (digit relabelling, band/stack/row/column permutations, transposition).

    Args:
        train_size: training puzzles (generated, or the first train_size of train_path).
        val_size: validation puzzles (generated, or the first val_size of val_path).
        test_size: generated test puzzles (ignored with eval_path, whose puzzles are the test set).
        min_clues: generated puzzles lose givens while the solution stays unique, down to this many
            (17-80; greedy removal rarely gets below 22, so 17 means "as few as possible").
        train_path: train on a tdoku .txt or puzzle,solution .csv file instead of generated puzzles.
        val_path: validate on a tdoku .txt or .csv file instead of generated puzzles (a file other than
            eval_path: best.ckpt is chosen on validation).
        eval_path: test on a tdoku .txt or .csv file instead of generated puzzles.
        eval_limit: read only the first eval_limit puzzles of eval_path (null: all; each puzzle is checked once,
            ~15 ms per hard one, then come from the cache).
        augment: augment training puzzles on the fly.
        batch_size: puzzles per batch (per device).
        seed: seed of the generated puzzles (train, val and test use separate streams), augmentations, shuffling.
        num_workers: DataLoader worker processes.
        cache_dir: folder of the npz cache of generated and parsed sets (null: no cache).
    """

    name = "sudoku"
    vocab_size = 11
    seq_len = 81

    def __init__(self, train_size: int = 1000, val_size: int = 100, test_size: int = 1000, min_clues: int = 17,
                 train_path: Optional[str] = None, val_path: Optional[str] = None, eval_path: Optional[str] = None,
                 eval_limit: Optional[int] = None, augment: bool = True, batch_size: int = 64, seed: int = 0,
                 num_workers: int = 0, cache_dir: Optional[str] = "runs/cache"):
        super().__init__(batch_size=batch_size, augment=augment, seed=seed, num_workers=num_workers,
                         cache_dir=cache_dir)
        if min(train_size, val_size, test_size) < 1 or (eval_limit is not None and eval_limit < 1):
            raise EmberConfigError(f"train_size={train_size}, val_size={val_size}, test_size={test_size} and "
                                   f"eval_limit={eval_limit} must be >= 1 (eval_limit null reads the whole file)")
        if not 17 <= min_clues <= 80:
            raise EmberConfigError(f"min_clues={min_clues} is outside 17..80: no sudoku with fewer than 17 givens "
                                   "has a unique solution")
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.min_clues, self.train_path, self.val_path = min_clues, train_path, val_path
        self.eval_path, self.eval_limit = eval_path, eval_limit

    augment_pair = staticmethod(augment_sudoku)

    def build(self, split: str) -> PuzzleSet:
        path, limit = self.split_file(split)
        if path is None:
            params = {"name": self.name, "split": split, "count": self.sizes[split], "seed": self.seed,
                      "min_clues": self.min_clues}
            return cached(self.cache_dir, params,
                          lambda: generate_sudoku(self.sizes[split], self.seed, self.min_clues, stream=split))
        return self._read(path, limit)

    def _read(self, path: str, limit: Optional[int]) -> PuzzleSet:
        file = Path(path).expanduser()
        if not file.is_file():
            raise EmberDataError(f"sudoku file {file} does not exist: give a tdoku .txt file (81 chars a line) or "
                                 "a CSV with header puzzle,solution, or null to generate puzzles")
        params = {"name": self.name, "split": "file", "file": file.name, "sha256": file_digest(file), "limit": limit}
        return cached(self.cache_dir, params, lambda: read_sudoku(file, limit))
