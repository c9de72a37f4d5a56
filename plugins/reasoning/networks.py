"""The network f of the Tiny Recursive Model, injected into TinyRecursiveCore (SPEC 3.5).

Two variants, as in the paper: TRM-MLP (`MixerNetwork`, an MLP-mixer that mixes positions
with an MLP over the sequence; the paper's best on Sudoku) and TRM-Att (`AttentionNetwork`,
bidirectional self-attention with rotary positions; the paper's choice for Maze and ARC).
Both are post-norm stacks of `layers` blocks (RMSNorm without learned scale, SwiGLU
feed-forward), as in the paper's code. In YAML each is a factory called with
(d_model, seq_len) by the core, so sizes are written once.

Letters: b batch, s positions, d width, h heads, e head width.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ember.base import RecursionNetwork
from ember.errors import EmberConfigError
from ember.ops.layers import SwiGLU
from ember.ops.rope import apply_rope, rope_cos_sin
from ember.ops.stack import MAX_LAYERS


def check_network_args(layers: int, expansion: float):
    """Refuse a network no run can use: layers in 1..MAX_LAYERS, expansion finite and > 0."""
    if not 1 <= layers <= MAX_LAYERS or not 0 < expansion < math.inf:
        raise EmberConfigError(f"layers={layers} must be in 1..{MAX_LAYERS} and expansion={expansion} finite and > 0")


class MixerNetwork(RecursionNetwork):
    """TRM-MLP: per block, an MLP across positions, then an MLP across channels (post-norm).

    Args:
        d_model: width d (given by the core).
        seq_len: number of positions s (given by the core); the position-mixing MLP is s -> s.
        layers: number of blocks (the paper: 2).
        expansion: hidden width of both MLPs as a multiple of their input width (the paper: 4).
    """

    def __init__(self, d_model: int, seq_len: int, layers: int = 2, expansion: float = 4.0):
        super().__init__()
        check_network_args(layers, expansion)
        self.token_mlps = nn.ModuleList(SwiGLU(seq_len, _hidden(seq_len, expansion)) for _ in range(layers))
        self.channel_mlps = nn.ModuleList(SwiGLU(d_model, _hidden(d_model, expansion)) for _ in range(layers))
        self.norm = nn.RMSNorm(d_model, elementwise_affine=False)

    def forward(self, h: Tensor) -> Tensor:
        """h: (b, s, d) -> (b, s, d)."""
        for token_mlp, channel_mlp in zip(self.token_mlps, self.channel_mlps):
            mixed = token_mlp(rearrange(h, "b s d -> b d s"))  # (b, d, s)
            h = self.norm(h + rearrange(mixed, "b d s -> b s d"))
            h = self.norm(h + channel_mlp(h))
        return h


class AttentionNetwork(RecursionNetwork):
    """TRM-Att: per block, bidirectional self-attention with rotary positions, then SwiGLU (post-norm).

    Args:
        d_model: width d (given by the core).
        seq_len: number of positions s (given by the core); sets the rotary tables.
        layers: number of blocks (the paper: 2).
        heads: attention heads (must divide d_model).
        expansion: SwiGLU hidden width as a multiple of d_model (the paper: 4).
        norm: "post" (the paper's blocks: h <- norm(h + sublayer(h))) or "pre" (h <- h + sublayer(norm(h)),
            the output normed once). At d=64 the post-norm blocks did not learn to copy a neighbour's token in 400
            steps where pre-norm did (BENCHMARKS section 8, small mazes).
        positions: "1d" (the paper's: rotary angles from the index in the flattened sequence, so the last cell of a
            grid row and the first of the next are as near as two neighbours in a row) or "2d" (for a square grid of
            side sqrt(seq_len): half of each head's rotary pairs turn with the row, half with the column, so
            attention sees (row, column) offsets and no wrap-around; the weights fit any grid size). "2d" needs a
            square seq_len and a head width divisible by 4.
    """

    def __init__(self, d_model: int, seq_len: int, layers: int = 2, heads: int = 8, expansion: float = 4.0,
                 norm: Literal["post", "pre"] = "post", positions: Literal["1d", "2d"] = "1d"):
        super().__init__()
        check_network_args(layers, expansion)
        if heads < 1 or d_model % heads or (d_model // heads) % 2:
            raise EmberConfigError(f"d_model={d_model} must be divisible by heads={heads} into an even head width")
        if norm not in ("post", "pre"):
            raise EmberConfigError(f"norm={norm!r} must be 'post' (the paper's) or 'pre'")
        self.heads, self.pre_norm = heads, norm == "pre"
        self.qkv = nn.ModuleList(nn.Linear(d_model, 3 * d_model, bias=False) for _ in range(layers))
        self.out = nn.ModuleList(nn.Linear(d_model, d_model, bias=False) for _ in range(layers))
        self.mlps = nn.ModuleList(SwiGLU(d_model, _hidden(d_model, expansion)) for _ in range(layers))
        self.norm = nn.RMSNorm(d_model, elementwise_affine=False)
        cos, sin = rotary_tables(seq_len, d_model // heads, positions)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def attend(self, i: int, h: Tensor) -> Tensor:
        q, k, v = rearrange(self.qkv[i](h), "b s (three h e) -> three b h s e", three=3, h=self.heads)
        cos, sin = self.cos[: h.shape[1]].to(q.dtype), self.sin[: h.shape[1]].to(q.dtype)
        o = F.scaled_dot_product_attention(apply_rope(q, cos, sin), apply_rope(k, cos, sin), v)  # (b, h, s, e)
        return self.out[i](rearrange(o, "b h s e -> b s (h e)"))

    def forward(self, h: Tensor) -> Tensor:
        """h: (b, s, d) -> (b, s, d)."""
        if self.pre_norm:
            for i, mlp in enumerate(self.mlps):
                h = h + self.attend(i, self.norm(h))
                h = h + mlp(self.norm(h))
            return self.norm(h)
        for i, mlp in enumerate(self.mlps):
            h = self.norm(h + self.attend(i, h))
            h = self.norm(h + mlp(h))
        return h


def rotary_tables(seq_len: int, head_width: int, positions: str) -> tuple[Tensor, Tensor]:
    """cos, sin (seq_len, head_width/2) of AttentionNetwork's `positions`: "1d" over the flattened sequence, or "2d"
    over a square grid (the first head_width/4 pairs turn with the row, the rest with the column)."""
    if positions == "1d":
        return rope_cos_sin(torch.arange(seq_len), head_width)
    side = math.isqrt(seq_len)
    if positions != "2d":
        raise EmberConfigError(f"positions={positions!r} must be '1d' (the paper's) or '2d' (a square grid)")
    if side * side != seq_len or head_width % 4:
        raise EmberConfigError(f"positions='2d' needs a square seq_len (got {seq_len}) and a head width divisible by "
                               f"4 (got {head_width}): use positions '1d', or change d_model or heads")
    cell = torch.arange(seq_len)
    row_cos, row_sin = rope_cos_sin(cell // side, head_width // 2)  # (seq_len, head_width/4) each
    col_cos, col_sin = rope_cos_sin(cell % side, head_width // 2)
    return torch.cat((row_cos, col_cos), -1), torch.cat((row_sin, col_sin), -1)


def _hidden(width: int, expansion: float) -> int:
    """SwiGLU hidden width: expansion * width * 2/3 (equal parameters to a plain MLP), rounded up to 8."""
    return 8 * max(1, round(expansion * width * 2 / 3 / 8 + 0.49))
