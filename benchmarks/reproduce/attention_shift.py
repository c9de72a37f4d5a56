"""Can one AttentionNetwork block learn to copy its left neighbour's token? Post-norm vs pre-norm.

The smallest task that needs position-dependent attention: inputs are random tokens (6 kinds, 225 positions, the
15x15 maze's length), the target is the input rolled by one position. One block (d=64, 4 heads, RoPE), AdamW,
batches of 32; prints the cross-entropy every 100 steps (chance: ln 6 = 1.792).

    python benchmarks/reproduce/attention_shift.py --norm post --lr 1e-3
    python benchmarks/reproduce/attention_shift.py --norm pre --lr 1e-3
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from ember.plugins.reasoning.networks import AttentionNetwork


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--norm", choices=["post", "pre"], default="post", help="AttentionNetwork's block wiring")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    parser.add_argument("--steps", type=int, default=400, help="optimizer steps")
    parser.add_argument("--shift", type=int, default=1, help="the target is the input rolled by this many positions")
    args = parser.parse_args()
    torch.manual_seed(0)
    length, d, vocab = 225, 64, 6
    net = AttentionNetwork(d, length, layers=1, heads=4, expansion=2, norm=args.norm)
    embed, head = torch.nn.Embedding(vocab, d), torch.nn.Linear(d, vocab)
    params = [*net.parameters(), *embed.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=args.lr)
    for step in range(args.steps + 1):
        x = torch.randint(0, vocab, (32, length))
        logits = head(net(embed(x) * d**0.5))
        loss = F.cross_entropy(logits.transpose(1, 2), torch.roll(x, args.shift, dims=1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            print(f"norm={args.norm} lr={args.lr:g} step {step}: cross-entropy {loss.item():.3f}", flush=True)


if __name__ == "__main__":
    main()
