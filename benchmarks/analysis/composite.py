"""What each part of a trained composite does on the composite task (issue 32), on its test split:

- accuracy per group (first, sum, recall_calm, recall_alarmed) and mean rounds of sensing taken, for max_rounds
  1..R (R: the signal's windows) with the learned more-sensing flag, and with every round always taken
  (sense_threshold 0);
- the memories' commit gates g on alarmed vs calm sessions, and recall by arousal with the modulation reaching the
  neuromodulators (as trained) or not (modulate_memories off at test time, same weights).

    python benchmarks/analysis/composite.py --config RUN/config.yaml --ckpt_path RUN/checkpoints/best.ckpt \\
        [--limit 512] [--out table.md]

Prints a markdown table (and writes it to --out when given).
"""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

from ember.base import Neuromodulator
from ember.batch import Batch
from ember.cli.runs import load_run
from ember.data_modules.composite import CompositeData
from ember.metrics import answer_stats
from ember.model import EmberModel
from ember.perception import stop_round

KINDS = ("pm", "em")


def memory_kind(name: str) -> str:
    """"em" for a neuromodulator of an episodic store (a block's own MemoryReadLayer), else "pm" (a layer's PM)."""
    return "pm" if ".pm." in name else "em"


@contextmanager
def gates_of(model: EmberModel, into: list[tuple[str, torch.Tensor]]):
    """Collect (memory kind, commit gate g per stream) of every neuromodulator call inside the block."""
    def keep(kind: str):
        return lambda _module, _inputs, out: into.append((kind, out.g.detach()))

    hooks = [m.register_forward_hook(keep(memory_kind(name))) for name, m in model.named_modules()
             if isinstance(m, Neuromodulator)]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def score(model: EmberModel, data: CompositeData, limit: int, rounds: int, threshold: float, modulate: bool):
    """Accuracy per group, mean rounds per group, and the mean commit gate of each memory kind on calm and alarmed
    sessions ({(kind, alarmed): gate})."""
    model.max_rounds, model.sense_threshold = rounds, threshold
    model.hparams.modulate_memories = modulate
    groups = data.task.group_names
    right, answers = torch.zeros(len(groups)), torch.zeros(len(groups))
    taken, counted = torch.zeros(len(groups)), torch.zeros(len(groups))
    gate = {(kind, flag): [] for kind in KINDS for flag in (False, True)}
    seen = 0
    for raw in data.test_dataloader():
        batch = Batch.of(raw)
        gates: list[tuple[str, torch.Tensor]] = []
        with torch.no_grad(), gates_of(model, gates):
            _, preds = model.evaluate(batch)
            views = model.rounds(batch.signal)
        stats = answer_stats(preds == batch.targets, batch.loss_mask, batch.answer_id, batch.group, len(groups))
        right, answers = right + stats["right"], answers + stats["answers"]
        steps = (stop_round(views, threshold) + 1).float()
        for i in range(len(groups)):
            has = (batch.group == i).any(1)
            taken[i], counted[i] = taken[i] + steps[has].sum(), counted[i] + has.sum()
        alarmed = raw["alarmed"].bool()
        for kind, g in gates:  # (R b,) or (b,) per call: the streams repeat the batch once per round
            arousal = alarmed.repeat(g.shape[0] // alarmed.shape[0])
            for flag in (False, True):
                gate[kind, flag].append(g[arousal == flag])
        seen += batch.tokens.shape[0]
        if seen >= limit:
            break
    mean = lambda xs: float(torch.cat(xs).float().mean()) if xs else float("nan")  # noqa: E731
    ratio = lambda a, b: [x / y if y else float("nan") for x, y in zip(a.tolist(), b.tolist())]  # noqa: E731
    return ratio(right, answers), ratio(taken, counted), {key: mean(values) for key, values in gate.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--config", required=True, action="append", help="the run's config.yaml; again for overlays")
    parser.add_argument("--ckpt_path", required=True, help="its checkpoint")
    parser.add_argument("--limit", type=int, default=512, help="test examples scored per line (default 512)")
    parser.add_argument("--out", help="also write the markdown table to this file (must not exist)")
    args, extra = parser.parse_known_args(argv)
    if args.out and Path(args.out).exists():
        parser.error(f"--out {args.out} exists: give a new path")
    model, data = load_run(args.config, args.ckpt_path, extra, EmberModel)
    if not isinstance(data, CompositeData):
        parser.error(f"{args.config[0]} does not train on the composite task (data: CompositeData)")
    data.setup("test")
    groups = data.task.group_names
    trained_rounds = model.max_rounds
    lines = ["| setting | " + " | ".join(f"acc {g}" for g in groups) + " | rounds first | rounds sum "
             "| PM gate calm / alarmed | EM gate calm / alarmed |", "|---|" + "---|" * (len(groups) + 4)]
    settings = [(r, 0.5, True, f"max_rounds {r}, learned flag") for r in range(1, data.task.windows + 1)]
    settings += [(data.task.windows, 0.0, True, f"max_rounds {data.task.windows}, every round"),
                 (trained_rounds, 0.5, False, f"max_rounds {trained_rounds}, modulation off at test")]
    for rounds, threshold, modulate, name in settings:
        if rounds > 1 and model.reasoning is None:
            continue
        acc, taken, gate = score(model, data, args.limit, rounds, threshold, modulate)
        gates = " | ".join(f"{gate[kind, False]:.3f} / {gate[kind, True]:.3f}" for kind in KINDS)
        lines.append(f"| {name} | " + " | ".join(f"{a:.3f}" for a in acc) +
                     f" | {taken[0]:.2f} | {taken[1]:.2f} | {gates} |")
        print(lines[-1], flush=True)
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
