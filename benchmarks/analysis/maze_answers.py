"""What a trained maze TinyRecursiveCore's wrong answers are: another shortest path, or no shortest path at all.

Exact accuracy counts an answer right only where it is the label's path. Where shortest paths tie (Maze-Hard, and
`--data.init_args.style open` mazes), an answer can be a true shortest path that breaks ties another way than the
label's rule (TIE_ORDER). This reads each maze's answer at the halting step (as `ember test`) and sorts it:

- exact: the label;
- another shortest path: marks a shortest S->G path, but not the label's (a tie-break miss);
- not a shortest path: anything else (cells missing, extra, or a longer way);

and, for the answers that are not a shortest path, the mean number of wrong cells.

    python benchmarks/analysis/maze_answers.py --config RUN/config.yaml --ckpt_path RUN/checkpoints/last.ckpt \\
        --split test [--steps S] [any --data... or --model... option]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from ember.cli.runs import add_run_arguments, load_run, split_loader
from ember.data_modules.maze import MazeData, check_maze
from ember.plugins.reasoning.trm import TinyRecursiveCore


def sort_answers(inputs: np.ndarray, labels: np.ndarray, answers: np.ndarray, size: int) -> dict[str, float]:
    """Shares of exact answers, other shortest paths and the rest, over mazes (N, size*size); and the mean number of
    wrong cells in the rest (0 where there is none)."""
    exact = (answers == labels).all(1)
    shortest = np.array([check_maze(x, a, size) is None for x, a in zip(inputs, answers)])
    rest = ~shortest & ~exact
    wrong_cells = (answers != labels).sum(1)[rest]
    return {"exact": exact.mean(), "another shortest path": (shortest & ~exact).mean(),
            "not a shortest path": rest.mean(), "wrong cells where not": wrong_cells.mean() if rest.any() else 0.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, "score")
    parser.add_argument("--steps", type=int, default=None, help="supervision steps (default: the model's eval_steps)")
    args, extra = parser.parse_known_args(argv)
    try:
        model, data = load_run(args.config, args.ckpt_path, extra, TinyRecursiveCore)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not isinstance(data, MazeData):
        print(f"error: {args.config[0]} trains on {type(data).__name__}, not MazeData", file=sys.stderr)
        return 2
    inputs, labels, answers = [], [], []
    with torch.no_grad():
        for batch in split_loader(data, args.split):
            answers.append(model.think(batch["inputs"], args.steps or model.eval_steps).preds.numpy())
            inputs.append(batch["inputs"].numpy())
            labels.append(batch["labels"].numpy())
    shares = sort_answers(np.concatenate(inputs), np.concatenate(labels), np.concatenate(answers), data.size)
    print(f"{sum(len(a) for a in answers)} {args.split} mazes, {data.size}x{data.size}\n")
    print("| " + " | ".join(shares) + " |\n|" + "---|" * len(shares))
    print("| " + " | ".join(f"{v:.3f}" if k != "wrong cells where not" else f"{v:.1f}" for k, v in shares.items())
          + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
