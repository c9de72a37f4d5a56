"""Where a recall model loses whole answers: the accuracy of each answer byte by its place in the answer (first,
second, ...; the first must bind name + attribute, the later ones can follow the bytes before them), and whole- and
byte-accuracy by the attribute asked about. Teacher-forced, as `ember test` scores them.

    python benchmarks/analysis/answer_bytes.py --config RUN/config.yaml --ckpt_path RUN/checkpoints/best.ckpt \\
        [--limit 64] [--places 10] [any --data... or --model... option]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict

import torch

from ember.cli.runs import add_memory_run_arguments, load_memory_run

QUESTION = re.compile(rb"'s ([^?]+)\? A: $")  # "Q: <name>'s <attribute>? A: " just before an answer


def answers(tokens: list[int], mask: list[bool], ids: list[int]) -> list[tuple[str, list[int]]]:
    """(attribute asked, target positions) of each answer in one row: position t predicts tokens[t + 1]."""
    out = []
    for a in sorted({i for i, m in zip(ids, mask) if m}):
        positions = [t for t, (m, i) in enumerate(zip(mask, ids)) if m and i == a]
        asked = QUESTION.search(bytes(tokens[max(0, positions[0] - 63):positions[0] + 1]))
        out.append((asked.group(1).decode(errors="replace") if asked else "?", positions))
    return out


def tally(rows: list[tuple[str, list[bool]]], places: int) -> tuple[dict[int, list[bool]], dict[str, list[list[bool]]]]:
    """Per place in the answer (places - 1 and later pooled) the bytes' rightness, and per attribute the answers'."""
    by_place, by_attr = defaultdict(list), defaultdict(list)
    for attr, right in rows:
        for j, ok in enumerate(right):
            by_place[min(j, places - 1)].append(ok)
        by_attr[attr].append(right)
    return by_place, by_attr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_memory_run_arguments(parser)
    parser.add_argument("--places", type=int, default=10, help="places reported one by one; later ones pooled "
                        "into the last (default 10)")
    args, extra = parser.parse_known_args(argv)
    if args.limit < 1 or args.places < 1:
        parser.error("--limit and --places must be >= 1")
    try:
        model, data = load_memory_run(args.config, args.ckpt_path, extra)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows, seen = [], 0
    with torch.no_grad():
        for batch in data.val_dataloader():
            batch = {k: v[: args.limit - seen] for k, v in batch.items()}
            logits, _ = model(batch["tokens"][:, :-1], None)
            right = logits.argmax(-1) == batch["tokens"][:, 1:]
            for r in range(right.shape[0]):
                mask = batch["loss_mask"][r].bool().tolist()[: right.shape[1]]
                for attr, positions in answers(batch["tokens"][r].tolist(), mask, batch["answer_id"][r].tolist()):
                    rows.append((attr, [bool(right[r, t]) for t in positions]))
            seen += batch["tokens"].shape[0]
            if seen >= args.limit:
                break
    by_place, by_attr = tally(rows, args.places)
    print(f"{len(rows)} answers of {seen} validation sessions")
    print("byte accuracy by place in the answer: " + ", ".join(
        f"{j + 1}{'+' if j == args.places - 1 else ''}: {sum(v) / len(v):.3f}" for j, v in sorted(by_place.items())))
    for attr, answers_ in sorted(by_attr.items()):
        whole = sum(all(a) for a in answers_) / len(answers_)
        byte = sum(sum(a) for a in answers_) / sum(len(a) for a in answers_)
        print(f"{attr}: {len(answers_)} answers, acc {whole:.3f}, byte acc {byte:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
