"""Why does TRM-Att sit on the maze copy plateau? One pass of the network f on generated mazes, variants side by side.

The 15x15 maze TRM-Att (BENCHMARKS section 8) learns the context-free answer (the input copied, "path" never) and
stays there. This trains the network f alone, in one pass (logits = head(f(embed(maze)))), so a variant costs
seconds per hundred steps, and prints, every --every steps, the cross-entropy on 200 held-out mazes against three
yardsticks measured on the same mazes: lookup tables of label frequencies (counted on the training mazes) given
the cell's own token (the plateau: what copying scores), its 3x3 window and its 5x5 window. A network that uses
context falls below the plateau; one that memorizes the training mazes falls on the training batches only.

    python benchmarks/reproduce/maze_plateau.py --steps 3000 --every 250                 # AttentionNetwork as it is
    python benchmarks/reproduce/maze_plateau.py --steps 3000 --every 250 --network mixer # TRM-MLP's network
    python benchmarks/reproduce/maze_plateau.py --task degree --steps 400 --every 100    # a purely local control task

Variants: the network (attention or mixer), its block wiring (--norm), the initialisation of its linear layers
(--init torch: PyTorch's default, uniform with std 1/sqrt(3 fan_in); lecun: truncated normal, std
1/sqrt(fan_in), as the reference TRM code), the positions (--positions rope, learned absolute embeddings
added to the input, or both), width, batch and learning rate. --task degree swaps the labels for each open cell's
number of open neighbours, which a 3x3 window decides: it tells "cannot look at neighbours" from "the path labels
give little to learn from".
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ember.data_modules.maze import WALL, MazeData, augment_maze, generate_mazes
from ember.plugins.reasoning.networks import AttentionNetwork, MixerNetwork


def window_codes(inputs: np.ndarray, size: int, radius: int) -> np.ndarray:
    """(N, size*size) maze tokens -> (N, size*size) int64: one code per cell for its (2r+1)^2 window (walls outside)."""
    grid = inputs.reshape(-1, size, size).astype(np.int64)
    padded = np.pad(grid, ((0, 0), (radius, radius), (radius, radius)), constant_values=WALL)
    codes = np.zeros_like(grid)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            codes = codes * MazeData.vocab_size + padded[:, dy:dy + size, dx:dx + size]
    return codes.reshape(inputs.shape)


def lookup_entropy(train: tuple[np.ndarray, np.ndarray], held: tuple[np.ndarray, np.ndarray], size: int,
                   radius: int) -> float:
    """Held-out cross-entropy (nats) of a table of label frequencies per (2r+1)^2 input window, counted on train.

    radius 0 is the best context-free predictor: the cell's own token only (the copy plateau). Each window's counts
    are smoothed towards the centre token's label frequencies (one pseudo-count), so unseen windows fall back to it.
    """
    vocab = int(max(train[1].max(), held[1].max())) + 1
    centre = np.zeros((MazeData.vocab_size, vocab))
    np.add.at(centre, (train[0].astype(np.int64), train[1].astype(np.int64)), 1.0)
    centre = (centre + 1e-3) / (centre + 1e-3).sum(1, keepdims=True)
    codes = window_codes(train[0], size, radius).ravel()
    keys, inverse = np.unique(codes, return_inverse=True)
    counts = np.zeros((len(keys), vocab))
    np.add.at(counts, (inverse, train[1].ravel().astype(np.int64)), 1.0)
    held_codes, held_labels = window_codes(held[0], size, radius).ravel(), held[1].ravel().astype(np.int64)
    row = np.searchsorted(keys, held_codes).clip(max=len(keys) - 1)
    seen = keys[row] == held_codes
    prior = centre[held[0].ravel().astype(np.int64)]  # (cells, vocab)
    hits = np.where(seen[:, None], counts[row], 0.0)
    p = (hits + prior) / (hits.sum(1, keepdims=True) + 1.0)
    return float(-np.log(p[np.arange(len(p)), held_labels]).mean())


def open_neighbours(inputs: np.ndarray, size: int) -> np.ndarray:
    """The degree task: for each open cell the number of open 4-neighbours (0-4); walls get 5. Purely local."""
    grid = (inputs.reshape(-1, size, size) != WALL).astype(np.int64)
    padded = np.pad(grid, ((0, 0), (1, 1), (1, 1)))
    degree = padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:]
    return np.where(grid == 1, degree, 5).reshape(inputs.shape)


def lecun_(module: nn.Module) -> None:
    """Truncated LeCun-normal weights (std 1/sqrt(fan_in), cut at 2 std) for every Linear in module."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            std = 1.0 / math.sqrt(layer.in_features)
            nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)


class OnePass(nn.Module):
    """logits = head(f(embed(inputs) [+ learned positions])), the TRM's input embedding and answer head."""

    def __init__(self, f: nn.Module, vocab: int, d: int, length: int, learned_positions: bool):
        super().__init__()
        self.f, self.d = f, d
        self.embed = nn.Embedding(vocab, d)
        nn.init.trunc_normal_(self.embed.weight, std=1.0 / math.sqrt(d))
        self.pos = nn.Parameter(torch.randn(length, d) / math.sqrt(d)) if learned_positions else None
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, inputs: Tensor) -> Tensor:
        e = self.embed(inputs)
        if self.pos is not None:
            e = (e + self.pos) / math.sqrt(2.0)
        return self.head(self.f(e * math.sqrt(self.d)))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", choices=["attention", "mixer"], default="attention", help="the network f")
    parser.add_argument("--norm", choices=["post", "pre"], default="post", help="AttentionNetwork's block wiring")
    parser.add_argument("--init", choices=["torch", "lecun"], default="torch", help="init of the linear layers")
    parser.add_argument("--positions", choices=["rope", "learned", "both"], default="rope",
                        help="attention positions: rotary, learned absolute (added to the input), or both")
    parser.add_argument("--task", choices=["path", "degree"], default="path",
                        help="labels: the shortest path (the maze task) or each open cell's open-neighbour count")
    parser.add_argument("--size", type=int, default=15, help="maze side")
    parser.add_argument("--min-path", type=int, default=37, help="shortest S-G path of the generated mazes, moves")
    parser.add_argument("--mazes", type=int, default=1000, help="training mazes (dihedral augmentations on top)")
    parser.add_argument("--d", type=int, default=64, help="width")
    parser.add_argument("--layers", type=int, default=2, help="blocks of f")
    parser.add_argument("--heads", type=int, default=4, help="attention heads")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (100 warm-up steps)")
    parser.add_argument("--batch", type=int, default=16, help="mazes per step")
    parser.add_argument("--steps", type=int, default=600, help="optimizer steps")
    parser.add_argument("--every", type=int, default=50, help="print every this many steps")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model and the batches")
    return parser.parse_args()


def build_model(args: argparse.Namespace) -> nn.Module:
    """f (attention or mixer, with the chosen norm, positions and init) inside a one-pass model."""
    length = args.size * args.size
    if args.network == "mixer":
        f: nn.Module = MixerNetwork(args.d, length, layers=args.layers)
    else:
        f = AttentionNetwork(args.d, length, layers=args.layers, heads=args.heads, norm=args.norm)
        if args.positions == "learned":  # switch the rotary tables off: angle 0 everywhere
            f.cos.fill_(1.0)
            f.sin.zero_()
    if args.init == "lecun":
        lecun_(f)
    return OnePass(f, MazeData.vocab_size, args.d, length, learned_positions=args.positions in ("learned", "both"))


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    data = generate_mazes(args.mazes, seed=0, size=args.size, min_path=args.min_path)
    held = generate_mazes(200, seed=1, size=args.size, min_path=args.min_path)
    if args.task == "degree":
        for split in (data, held):
            split.labels[:] = open_neighbours(split.inputs, args.size)
    splits = (data.inputs, data.labels), (held.inputs, held.labels)
    plateau, window3, window5 = (lookup_entropy(*splits, args.size, radius) for radius in (0, 1, 2))
    held_inputs = torch.from_numpy(held.inputs.astype(np.int64))
    held_labels = torch.from_numpy(held.labels.astype(np.int64))
    model = build_model(args)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100))
    label = (f"{args.task}: {args.network} norm={args.norm} init={args.init} positions={args.positions} "
             f"d={args.d} batch={args.batch} lr={args.lr:g}")
    print(f"{label}: held-out cross-entropy of lookup tables on the cell's own token (the plateau) {plateau:.3f}, "
          f"on its 3x3 window {window3:.3f}, on its 5x5 window {window5:.3f}", flush=True)
    train(args, model, opt, sched, data, (held_inputs, held_labels), plateau, label)


def train(args, model, opt, sched, data, held: tuple[torch.Tensor, torch.Tensor], plateau: float, label: str):
    """args.steps steps of augmented training mazes, the held-out cross-entropy printed every args.every steps."""
    held_inputs, held_labels = held
    rng = np.random.default_rng(args.seed)
    left = None  # the first printed step whose held-out cross-entropy is 0.01 below the plateau
    for step in range(args.steps + 1):
        pick = rng.integers(len(data.inputs), size=args.batch)
        pairs = [augment_maze(data.inputs[i], data.labels[i], rng) for i in pick]
        inputs = torch.from_numpy(np.stack([p[0] for p in pairs]).astype(np.int64))
        labels = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64))
        logits = model(inputs)
        loss = F.cross_entropy(logits.transpose(1, 2), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % args.every == 0:
            with torch.no_grad():
                held_logits = model(held_inputs)
            held_loss = F.cross_entropy(held_logits.transpose(1, 2), held_labels).item()
            right = held_logits.argmax(-1) == held_labels
            changed = held_labels != held_inputs
            marked = (right & changed).sum().item() / max(1, changed.sum().item())
            print(f"{label} step {step}: train {loss.item():.3f}, held-out cross-entropy {held_loss:.3f} "
                  f"(plateau {plateau:.3f}), cells right {right.float().mean().item():.3f}, "
                  f"changed cells right {marked:.3f}", flush=True)
            if left is None and held_loss < plateau - 0.01:
                left = step
    print(f"{label}: held-out cross-entropy 0.01 below the plateau from step "
          f"{left if left is not None else f'(never in {args.steps})'}", flush=True)


if __name__ == "__main__":
    main()
