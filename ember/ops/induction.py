"""The induction-head starting point of a memory's projections and short convolution (SlotMemory's conv_init)."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def induction_init(qkv: nn.Linear, conv: nn.Conv1d):
    """Start the projections as an induction head: the query of token t matches the key of an item whose
    conv - 1 preceding tokens equal t's last conv - 1 tokens, and that item's value is its own token, so after
    the bytes of something seen before, the read returns the byte that followed them there.

    qkv: the (d -> 3d) projection to queries, keys and values; conv: the depthwise causal convolution over
    them (3d channels, kernel conv >= 2, the last tap lag 0). Channel group j of d / (conv - 1) channels reads
    lag j in the queries and lag j + 1 in the keys (one-hot taps), with the same projection (W_q = W_k), and
    the values read lag 0:
        q_t[G_j] = (W_k x_{t-j})[G_j],  k_t[G_j] = (W_k x_{t-j-1})[G_j],  v_t = W_v x_t.
    Only the starting point: training moves every weight from here.
    """
    d, taps = qkv.in_features, conv.kernel_size[0]
    lags, now = taps - 1, taps - 1  # kernel index `now` is lag 0
    channel = torch.arange(d)
    lag = channel * lags // d  # (d,) each channel's lag group
    weight = torch.zeros_like(conv.weight)  # (3d, 1, conv)
    weight[channel, 0, now - lag] = 1.0  # queries: lags 0 .. conv - 2
    weight[d + channel, 0, now - lag - 1] = 1.0  # keys: lags 1 .. conv - 1
    weight[2 * d + channel, 0, now] = 1.0  # values: the token itself
    conv.weight.copy_(weight)
    qkv.weight[:d].copy_(qkv.weight[d:2 * d])
