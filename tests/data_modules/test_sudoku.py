"""Sudoku (TRM/HRM): solver, generator, augmentation, reader."""

from __future__ import annotations

import random

import numpy as np
import pytest

from ember.data_modules import sudoku
from ember.data_modules.sudoku import check_pair, count_solutions, generate_puzzle, read_sudoku, solve
from ember.errors import EmberDataError
from helpers import HARD, SUDOKU_DIR, digits, grid_text, needs

PATTERN = [(r * 3 + r // 3 + c) % 9 + 1 for r in range(9) for c in range(9)]  # a valid full grid


def two_solution_puzzle() -> list[int]:
    """A full grid with a 'deadly rectangle' blanked: rows 1, 3 x columns 2, 5 hold 1 9 / 9 1 in two boxes,
    so swapping the two digits gives a second solution."""
    text = "8.25.31463468217591.54.6283284965317913784562657132498428359671569217834731648925"
    return [0 if ch == "." else int(ch) for ch in text]


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


@pytest.mark.slow
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


@pytest.mark.parametrize("suffix", [".csv", ".txt"])
def test_a_file_that_is_not_text_names_its_line(tmp_path, suffix):
    file = tmp_path / f"bad{suffix}"
    header = "puzzle,solution\n" if suffix == ".csv" else "# header\n"
    file.write_bytes((header + grid_text(PATTERN) + "\n").encode() * 400 + b"\xff\xfe not text\n")
    with pytest.raises(EmberDataError, match=f"{file}:801: byte 0xff is not text"):
        read_sudoku(file)
