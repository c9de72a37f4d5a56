"""Where a trained memory model fails: exact accuracy by the answer's position in the sequence, and the
commit gates its controllers open at each plasticity period.

`ember test` reports one accuracy per group (near/far for MQAR, the delays for recall). A bounded
memory can also fail late: its items are overwritten as the stream goes on. This scores the test
split of a memory-task config (any MemoryTaskData task) by where each answer starts, in the buckets
given, and prints the mean gate g of every neuromodulator over the first periods of the same pass.
In MQAR the pairs sit at the start, so the position is the distance from the pair.

    python benchmarks/analysis/by_position.py --config RUN/config.yaml --ckpt_path RUN/checkpoints/best.ckpt \\
        --buckets 16,32,64,128,256,1024 [--limit 256] [any --data... or --model... option, e.g.
        --data.init_args.task.init_args.seq_len=1024 --model.init_args.backbone.init_args.em.init_args.items=256]
"""

from __future__ import annotations

import argparse
import sys

import torch

from ember.base import Neuromodulator
from ember.cli.runs import comma_list, load_memory_run


def answers(batch: dict, preds: torch.Tensor) -> list[tuple[int, bool]]:
    """(start position, exactly right) of every answer in a batch: an answer is the masked positions of one
    answer_id in one example, right when every one of its tokens is predicted."""
    out = []
    targets = batch["tokens"][:, 1:]
    for row in range(targets.shape[0]):
        mask, ids = batch["loss_mask"][row].bool(), batch["answer_id"][row]
        for a in ids[mask].unique().tolist():
            where = mask & (ids == a)
            out.append((int(where.nonzero()[0]), bool((preds[row][where] == targets[row][where]).all())))
    return out


def table(scored: list[tuple[int, bool]], edges: list[int]) -> str:
    """Markdown: answers and exact accuracy per position range [edges[i], edges[i + 1])."""
    rows = ["| answer starts at | answers | exact acc |", "|---|---|---|"]
    for lo, hi in zip([0, *edges], [*edges, None]):
        picked = [ok for pos, ok in scored if pos >= lo and (hi is None or pos < hi)]
        if picked:
            span = f"[{lo}, {hi})" if hi is not None else f">= {lo}"
            rows.append(f"| {span} | {len(picked)} | {sum(picked) / len(picked):.3f} |")
    total = sum(ok for _, ok in scored) / max(len(scored), 1)
    rows.append(f"| all | {len(scored)} | **{total:.3f}** |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, action="append",
                        help="the run's config.yaml (a MemoryTaskData task); again for overlays")
    parser.add_argument("--ckpt_path", required=True, help="its checkpoint")
    parser.add_argument("--buckets", type=comma_list(int, "16,64,256"), default="16,32,64,128,256,512,1024",
                        help="comma-separated, increasing position edges of the rows (default 16,...,1024)")
    parser.add_argument("--limit", type=int, default=256, help="test examples to score (default 256)")
    parser.add_argument("--periods", type=int, default=16, help="periods of the gate readout (default 16)")
    args, extra = parser.parse_known_args(argv)
    edges = args.buckets
    if edges != sorted(set(edges)) or edges[0] < 1 or args.limit < 1 or args.periods < 1:
        parser.error("--buckets must be increasing positive integers; --limit and --periods >= 1")
    try:
        model, data = load_memory_run(args.config, args.ckpt_path, extra)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    gates: dict[str, list[torch.Tensor]] = {}
    for name, module in model.named_modules():
        if isinstance(module, Neuromodulator):
            gates[name] = []
            module.register_forward_hook(lambda mod, inp, out, name=name: gates[name].append(out.g.detach()))
    scored, seen, first = [], 0, None
    with torch.no_grad():
        for batch in data.test_dataloader():
            if seen >= args.limit:
                break
            batch = {k: v[: args.limit - seen] for k, v in batch.items()}
            logits, _ = model(batch["tokens"][:, :-1], None)
            scored += answers(batch, logits.argmax(-1))
            seen += batch["tokens"].shape[0]
            first = first or {name: list(calls) for name, calls in gates.items()}  # one (b,) gate per period
    print(table(scored, edges))
    for name, calls in (first or {}).items():
        g = " ".join(f"{c.mean().item():.3f}" for c in calls[: args.periods])
        print(f"\nmean commit gate g per period (first test batch), {name}: {g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
