"""Pictures of a trained TinyRecursiveCore thinking: a few mazes' or sudokus' answers after chosen steps.

One row per puzzle. The first panel is the puzzle with its solution; then one panel per step in --show with
the model's answer after that step. Maze cells: walls dark, S and G dark blue, path cells the model marks
rightly blue, cells it gets wrong red, path cells it misses orange. Sudoku: givens black, digits it fills
rightly blue, wrongly red. Each title gives the step, the halting probability there and whether the answer
is exactly right. The step the halting rule reads (`halt_prob`, as `ember test` reads it) has a thick green frame.
`--pick unsolved` shows puzzles the model gets wrong where it reads them: where to look for what it misses.

    python benchmarks/analysis/show_thinking.py --config RUN/config.yaml --ckpt_path RUN/checkpoints/last.ckpt \\
        --split val --show 1,2,4,8,16 --puzzles 4 --pick unsolved --out thinking.png [any --data/--model option]

Letters: b batch, k steps, s cells.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

from ember.cli.runs import add_run_arguments, comma_list, load_run, split_loader
from ember.data_modules.maze import GOAL, PATH, START, WALL, MazeData
from ember.data_modules.sudoku import BLANK_ID, SudokuData
from ember.files import atomic_path
from ember.plugins.reasoning.trm import TinyRecursiveCore

PICKS = {"first": lambda right: torch.ones_like(right), "solved": lambda right: right,
         "unsolved": lambda right: ~right}
RIGHT, WRONG, MISSED, READ = (0.16, 0.40, 0.85), (0.85, 0.15, 0.15), (1.0, 0.65, 0.2), (0.1, 0.6, 0.2)


@torch.no_grad()
def collect(model: TinyRecursiveCore, loader, steps: int, count: int, pick: str) -> dict[str, torch.Tensor]:
    """The first `count` puzzles of loader that `pick` keeps (judged at the step the halting rule reads), run
    for `steps` steps: inputs, labels (b, s); step_preds (b, k, s); halt_logits (b, k); read (b,) 0-based."""
    kept: dict[str, list[torch.Tensor]] = {"inputs": [], "labels": [], "step_preds": [], "halt_logits": [],
                                           "read": []}
    found = 0
    for batch in loader:
        thought = model.think(batch["inputs"], steps)
        keep = PICKS[pick]((thought.preds == batch["labels"]).all(-1))
        for key, value in (("inputs", batch["inputs"]), ("labels", batch["labels"]),
                           ("step_preds", thought.step_preds), ("halt_logits", thought.halt_logits),
                           ("read", thought.halt_step - 1)):
            kept[key].append(value[keep])
        found += int(keep.sum())
        if found >= count:
            break
    return {key: torch.cat(values)[:count] for key, values in kept.items()}


def maze_image(inputs: np.ndarray, labels: np.ndarray, answer: np.ndarray | None) -> np.ndarray:
    """(size, size, 3) RGB of a maze (tokens (s,)); with answer, coloured by how it compares with labels."""
    size = math.isqrt(len(inputs))
    image = np.ones((len(inputs), 3))
    image[inputs == WALL] = 0.2
    if answer is None:
        image[labels == PATH] = RIGHT
    else:
        image[(answer == labels) & (labels == PATH)] = RIGHT
        image[answer != labels] = WRONG
        image[(answer != labels) & (labels == PATH)] = MISSED
    image[(inputs == START) | (inputs == GOAL)] = (0.05, 0.05, 0.45)
    return image.reshape(size, size, 3)


def draw_maze(ax, inputs: np.ndarray, labels: np.ndarray, answer: np.ndarray | None) -> None:
    ax.imshow(maze_image(inputs, labels, answer), interpolation="nearest")


def draw_sudoku(ax, inputs: np.ndarray, labels: np.ndarray, answer: np.ndarray | None) -> None:
    """A 9x9 grid: givens black; the solution grey (answer None) or the answer blue where right, red where wrong."""
    ax.imshow(np.ones((9, 9, 3)))
    for i in range(10):
        width = 1.6 if i % 3 == 0 else 0.4
        ax.axhline(i - 0.5, color="black", lw=width)
        ax.axvline(i - 0.5, color="black", lw=width)
    shown = labels if answer is None else answer
    for cell in range(81):
        given = inputs[cell] != BLANK_ID
        color = "black" if given else "0.55" if answer is None else RIGHT if shown[cell] == labels[cell] else WRONG
        digit = int(shown[cell]) - 1  # token d + 1 is digit d; 0 (pad) and 1 (blank) are no digit
        ax.text(cell % 9, cell // 9, str(digit) if digit >= 1 else "?", ha="center", va="center", color=color,
                fontsize=7, fontweight="bold" if given else "normal")


def figure(puzzles: dict[str, torch.Tensor], show: list[int], draw, title: str):
    """Rows of puzzles, columns: the puzzle with its solution, then the answer after each step in `show`."""
    import matplotlib  # deferred: a second to import, and only the figure needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred, as matplotlib above

    rows, cols = len(puzzles["inputs"]), 1 + len(show)
    fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols, 2.5 * rows), squeeze=False)
    for r in range(rows):
        inputs, labels = puzzles["inputs"][r].numpy(), puzzles["labels"][r].numpy()
        draw(axes[r, 0], inputs, labels, None)
        axes[r, 0].set_title(f"puzzle and solution; read at step {int(puzzles['read'][r]) + 1}", fontsize=8)
        for c, step in enumerate(show, start=1):
            answer = puzzles["step_preds"][r, step - 1].numpy()
            p_halt = torch.sigmoid(puzzles["halt_logits"][r, step - 1]).item()
            exact = "exact" if np.array_equal(answer, labels) else f"{int((answer != labels).sum())} wrong"
            draw(axes[r, c], inputs, labels, answer)
            axes[r, c].set_title(f"step {step}: p(halt) {p_halt:.2f}, {exact}", fontsize=8)
            if step - 1 == int(puzzles["read"][r]):
                for spine in axes[r, c].spines.values():
                    spine.set(linewidth=4, color=READ)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\nLetters")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, "draw")
    parser.add_argument("--show", type=comma_list(int, "1,2,4,8,16"), default="1,2,4,8,16",
                        help="comma-separated steps to draw; the model runs up to the largest (default 1,2,4,8,16)")
    parser.add_argument("--puzzles", type=int, default=4, help="rows: how many puzzles to draw (default 4)")
    parser.add_argument("--pick", choices=sorted(PICKS), default="first",
                        help="which puzzles: the first ones, or the first the model solves / does not solve where "
                             "the halting rule reads it (default first)")
    parser.add_argument("--out", default="thinking.png", help="PNG to write (default thinking.png)")
    args, extra = parser.parse_known_args(argv)
    if args.puzzles < 1 or min(args.show) < 1:
        parser.error("--puzzles and every --show step must be >= 1")
    try:
        model, data = load_run(args.config, args.ckpt_path, extra, TinyRecursiveCore)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    draws = {MazeData: draw_maze, SudokuData: draw_sudoku}
    draw = next((d for kind, d in draws.items() if isinstance(data, kind)), None)
    if draw is None:
        print(f"error: pictures exist for MazeData and SudokuData, not {type(data).__name__}", file=sys.stderr)
        return 2
    loader = split_loader(data, args.split)
    puzzles = collect(model, loader, max(args.show), args.puzzles, args.pick)
    if not len(puzzles["inputs"]):
        print(f"error: no {args.split} puzzle is {args.pick}; try another --pick", file=sys.stderr)
        return 2
    title = (f"{Path(args.ckpt_path).name}, {args.split} split, {args.pick} puzzles; green frame: the step read at "
             f"halt_prob {model.halt_prob:g}")
    fig = figure(puzzles, args.show, draw, title)
    with atomic_path(args.out) as tmp:  # a failed write leaves no half-written PNG at --out
        fig.savefig(tmp, dpi=130, bbox_inches="tight", format="png")
    print(f"{len(puzzles['inputs'])} {args.split} puzzles, steps {args.show}: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
