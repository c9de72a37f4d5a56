"""Does an episodic memory look up the right item? At every answer byte of a recall task, the rank of the key
written at the byte to copy among all keys written so far, as the trained query sees them.

An answer byte is predicted from the byte before it; the item that holds it is the one written where the
same value stands in the facts (the session's first occurrence of the answer), at the same offset. Its key
k_p is what the memory's projections and short convolution make of the input there, and the query q_t is
theirs at the answer. This ranks cos(q_t, k_p) among cos(q_t, k_j) for every earlier position j (every
token is a write candidate when writes = period; a store that writes fewer, or has overwritten some, can
only do worse), per memory, separately for each answer's first byte (which must bind name + attribute:
nothing before it in the question repeats the value) and for the rest (whose preceding bytes repeat the
fact's). Rank 0 is a top-1 lookup.

    python benchmarks/analysis/retrieval.py --config RUN/config.yaml --ckpt_path RUN/checkpoints/best.ckpt \\
        [--limit 64] [any --data... or --model... option]
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from ember.cli.runs import add_memory_run_arguments, load_memory_run
from ember.ops.slot_memory import SlotMemory


def sources(tokens: list[int], positions: list[int]) -> list[int]:
    """The input position of each byte to copy: answer target positions `positions` (position t predicts
    tokens[t + 1]) against the first occurrence of the answer's bytes in `tokens`."""
    value = [tokens[t + 1] for t in positions]
    start = next(s for s in range(len(tokens)) if tokens[s : s + len(value)] == value)
    return [start + i for i in range(len(value))]


def ranks(q: torch.Tensor, k: torch.Tensor, t: int, p: int) -> int:
    """Rank of key p among the keys 0..t for query t (0: the best); q, k (n, d) unit rows."""
    sims = k[: t + 1] @ q[t]
    return int((sims > sims[p]).sum())


def rank_batch(memory: SlotMemory, x: torch.Tensor, batch: dict) -> list[tuple[str, int]]:
    """("first" or "rest", rank) of every answer byte of a batch, for one memory whose input was x (b, n, d)."""
    past = x.new_zeros(x.shape[0], memory.conv - 1, 3 * x.shape[-1])  # a fresh stream: no earlier chunk
    q, k, _ = memory.mix_recent(memory.qkv(x), past)[0].chunk(3, -1)
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    out = []
    for row in range(x.shape[0]):
        mask, ids = batch["loss_mask"][row].bool(), batch["answer_id"][row]
        for a in ids[mask].unique().tolist():
            positions = (mask & (ids == a)).nonzero()[:, 0].tolist()
            for j, (t, p) in enumerate(zip(positions, sources(batch["tokens"][row].tolist(), positions))):
                out.append(("first" if j == 0 else "rest", ranks(q[row], k[row], t, p)))
    return out


def summary(found: list[int]) -> str:
    r = torch.tensor(found, dtype=torch.float32)
    return (f"median rank {r.median():.0f}, top-1 {(r == 0).float().mean():.2f}, top-5 {(r < 5).float().mean():.2f} "
            f"({len(found)} bytes)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_memory_run_arguments(parser)
    args, extra = parser.parse_known_args(argv)
    if args.limit < 1:
        parser.error("--limit must be >= 1")
    try:
        model, data = load_memory_run(args.config, args.ckpt_path, extra)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    memories = [m for m in model.modules() if isinstance(m, SlotMemory) and m.rule.__class__.__name__ == "SalientRule"]
    inputs: dict[int, torch.Tensor] = {}
    for i, memory in enumerate(memories):
        memory.register_forward_hook(lambda mod, inp, out, i=i: inputs.__setitem__(i, inp[0]))
    found = {(i, kind): [] for i in range(len(memories)) for kind in ("first", "rest")}
    seen = 0
    with torch.no_grad():
        for batch in data.val_dataloader():
            batch = {k: v[: args.limit - seen] for k, v in batch.items()}
            model(batch["tokens"][:, :-1], None)
            for i, memory in enumerate(memories):
                for kind, rank in rank_batch(memory, inputs[i], batch):
                    found[i, kind].append(rank)
            seen += batch["tokens"].shape[0]
            if seen >= args.limit:
                break
    for (i, kind), ranked in found.items():
        print(f"EM {i + 1}, {kind} bytes: {summary(ranked)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
