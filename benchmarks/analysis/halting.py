"""Thinking curve and halting thresholds of a trained TinyRecursiveCore, from one pass over a split.

`ember test` reads each puzzle's answer at one halting rule and one number of steps; this runs the
steps once and scores every reading: exact accuracy after each step (the thinking curve, with the share of
the cells to fill that are filled right: a maze's path cells marked) and at each
halting threshold `halt_prob` (the answer of the first step whose halting probability exceeds it, or
of the most confident step where none does: `halting_step`). It also says how many puzzles some step
solves (what a perfect halting rule would read), how many of those the last step has lost again, and how
well the halting head tells right answers from wrong ones at every step (AUROC). Choose the threshold on
`--split val`, report it on `--split test`.

    python benchmarks/analysis/halting.py --config RUN/config.yaml --ckpt_path RUN/checkpoints/last.ckpt \\
        --split val --steps 16 --halt-probs 0.5,0.7,0.9,0.95 [any --data... or --model... option]
"""

from __future__ import annotations

import argparse
import math
import sys

import torch
from torchmetrics.functional.classification import binary_auroc

from ember.cli.runs import add_run_arguments, comma_list, load_run, split_loader
from ember.plugins.reasoning.trm import TinyRecursiveCore, fill_accuracy, halting_step


@torch.no_grad()
def score(model: TinyRecursiveCore, loader, steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per puzzle and step: exactly right (N, steps) bool, and the halting logits (N, steps); per step, the share
    of the cells to fill (those the label changes: Sudoku blanks, a maze's path) filled right, all puzzles pooled
    (steps,)."""
    preds, halts, inputs, labels = [], [], [], []
    for batch in loader:
        thought = model.think(batch["inputs"], steps)
        preds.append(thought.step_preds)
        halts.append(thought.halt_logits)
        inputs.append(batch["inputs"])
        labels.append(batch["labels"])
    preds, inputs, labels = torch.cat(preds), torch.cat(inputs), torch.cat(labels)
    fill = torch.stack([fill_accuracy(preds[:, k], inputs, labels) for k in range(steps)])
    return (preds == labels[:, None]).all(-1), torch.cat(halts), fill


def table(right: torch.Tensor, halts: torch.Tensor, halt_probs: list[float], fill: torch.Tensor | None = None) -> str:
    """Markdown: exact accuracy after each step (and, given `fill`, the share of the cells to fill filled right);
    how many puzzles some step solves (the best any halting rule could read) and how many of those the last step
    has lost again; how well the halting logit tells right answers from wrong ones over every (puzzle, step), as an
    AUROC; then per threshold the exact accuracy, the mean step read, the mean steps used (a puzzle whose head
    never fires ran every step), the share of puzzles whose head fires and how many of those are right where it
    fires."""
    steps = right.shape[1]
    solved = right.any(1)
    both = right.flatten().unique().numel() == 2
    auroc = binary_auroc(halts.flatten().float(), right.flatten().long()).item() if both else float("nan")
    rows = ["| after step | " + " | ".join(str(s) for s in range(1, steps + 1)) + " |",
            "|---|" + "---|" * steps,
            "| exact | " + " | ".join(f"{a:.3f}" for a in right.float().mean(0).tolist()) + " |",
            *(["| cells to fill, right | " + " | ".join(f"{a:.3f}" for a in fill.tolist()) + " |"]
              if fill is not None else []),
            "", f"solved at some step: {solved.float().mean().item():.3f}; of those, wrong after the last step: "
            f"{(~right[solved, -1]).float().mean().item() if solved.any() else 0.0:.3f}; halting head AUROC "
            f"(right vs wrong answers, every step): {auroc:.3f}",
            "", "| halt_prob | exact | mean step read | mean steps used | fired | right where fired |",
            "|---|---|---|---|---|---|"]
    for p in halt_probs:
        read, used = halting_step(halts, p)
        at_read = right.gather(1, read[:, None]).squeeze(1)
        fired = halts.gt(math.log(p / (1 - p))).any(1)
        precision = f"{at_read[fired].float().mean().item():.3f}" if fired.any() else "-"
        mean_read, mean_used = (read + 1).float().mean().item(), used.float().mean().item()
        rows.append(f"| {p:g} | {at_read.float().mean().item():.3f} | {mean_read:.2f} | {mean_used:.2f} | "
                    f"{fired.float().mean().item():.3f} | {precision} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, "score")
    parser.add_argument("--steps", type=int, default=16, help="supervision steps to run (default 16)")
    parser.add_argument("--halt-probs", type=comma_list(float, "0.5,0.9,0.95"), default="0.5,0.7,0.8,0.9,0.95,0.99",
                        help="comma-separated halting thresholds in (0, 1) to score")
    args, extra = parser.parse_known_args(argv)
    if not all(0 < p < 1 for p in args.halt_probs) or args.steps < 1:
        parser.error("every --halt-probs value must be in (0, 1) and --steps >= 1")
    try:
        model, data = load_run(args.config, args.ckpt_path, extra, TinyRecursiveCore)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    loader = split_loader(data, args.split)
    right, halts, fill = score(model, loader, args.steps)
    print(f"{len(right)} {args.split} puzzles, {args.steps} steps\n")
    print(table(right, halts, args.halt_probs, fill))
    return 0


if __name__ == "__main__":
    sys.exit(main())
