"""How Maze-Hard's labels break ties between shortest paths, and what a rotated label costs an exact-match score.

Every Maze-Hard maze has several shortest S->G paths; its label is one of them. This reads a question,answer CSV (or
an HRM npy split folder) and reports:

- how many mazes have tied shortest paths, and how many forks (cells where two or more next steps stay shortest)
  each label passes;
- how many labels TIE_ORDER reproduces (`ember.data_modules.maze`: down, left, right, up at every fork);
- per dihedral symmetry k, the exact accuracy of a perfect solver that breaks ties by the rule as seen in the maze
  turned by k: what a model trained on mazes turned with their labels (the old augmentation) can at best learn for
  the mazes it saw turned by k. k = 0 is the file's own rule.

    python benchmarks/reproduce/maze_ties.py ../shared/data/maze_hard_30x30_1k/test.csv
    python benchmarks/reproduce/maze_ties.py ../shared/data/maze_hard_30x30_1k/train.csv --limit 200
"""

from __future__ import annotations

import argparse

import numpy as np

from ember.data_modules.maze import (
    GOAL,
    PATH,
    START,
    TIE_ORDER,
    WALL,
    bfs,
    dihedral,
    label_path,
    read_mazes,
    shortest_path,
    shortest_steps,
)

INVERSE = [0, 3, 2, 1, 4, 5, 6, 7]  # dihedral(dihedral(g, k), INVERSE[k]) == g: quarter turns undo by turning on


def forks(inputs: np.ndarray, labels: np.ndarray, size: int) -> int:
    """Cells of the label's path where more than one next step keeps the path shortest."""
    to_goal, _, _ = bfs([t != WALL for t in inputs.tolist()], size, int(np.flatnonzero(inputs == GOAL)[0]))
    on_path = np.flatnonzero((labels == PATH) | (inputs == START))
    return sum(len(shortest_steps(int(i), size, to_goal)) > 1 for i in on_path)


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="a question,answer maze CSV or an HRM npy split folder")
    parser.add_argument("--size", type=int, default=30, help="grid side (default 30, Maze-Hard's)")
    parser.add_argument("--limit", type=int, default=None, help="read only the first LIMIT mazes (default: all)")
    args = parser.parse_args(argv)
    data = read_mazes(args.path, args.size, args.limit)
    n = len(data.inputs)
    tied = sum(not shortest_path(x, args.size)[1] for x in data.inputs)
    fork_counts = [forks(x, y, args.size) for x, y in zip(*data)]
    rule = sum(np.array_equal(label_path(x, shortest_path(x, args.size)[0]), y) for x, y in zip(*data))
    print(f"{n} mazes from {args.path}")
    print(f"tied shortest paths: {tied} of {n}; forks on the label's path: mean {np.mean(fork_counts):.1f}, "
          f"min {min(fork_counts)}, max {max(fork_counts)}")
    print(f"labels that TIE_ORDER ({TIE_ORDER} at every fork) reproduces: {rule} of {n} ({rule / n:.3f})")
    print("exact accuracy of the rule as seen in the maze turned by k (k = 0: the file's own orientation):")
    scores = []
    for k in range(8):
        hits = 0
        for x, y in zip(*data):
            turned = dihedral(x, k)
            answer = dihedral(label_path(turned, shortest_path(turned, args.size)[0]), INVERSE[k])
            hits += np.array_equal(answer, y)
        scores.append(hits / n)
        print(f"  k={k}: {hits} of {n} ({hits / n:.3f})")
    print(f"mean over the 8 symmetries: {np.mean(scores):.3f}; over the 7 turned ones: {np.mean(scores[1:]):.3f}")


if __name__ == "__main__":
    main()
