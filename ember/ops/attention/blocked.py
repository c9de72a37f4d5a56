"""The blocked tier: sliding-window attention block by block, pure PyTorch, O(n W) cost and memory.

Letters: b batch, h heads, n new tokens, c cached tokens, e head width, W window,
m block index (blocks of W queries), n' = n rounded up to a multiple of W.

Exactly `reference.attend_dense` (tests/ops/test_attention.py holds them together).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def attend_blocked(q: Tensor, k: Tensor, v: Tensor, c: int, window: int, valid: Tensor | None) -> Tensor:
    """Sliding-window attention block by block, exactly `attend_dense` at O(n W) cost and memory.

    The keys are padded on the left to W + n' positions, so query i sits at key position W + i
    and sees keys i + 1 .. W + i: query block m (queries mW .. mW + W - 1) needs only key block
    [mW, mW + 2W). Left pads and invalid cache entries are masked; right pads are never visible
    to a real query (they lie in its future).

    Args:
        q: (b, h, n, e) rotated queries; k, v: (b, h, c + n, e), c <= W - 1 cached keys first.
        c: cached keys; window: W; valid: (b, c) which cached keys are live, or None (all).

    Returns:
        (b, h, n, e).
    """
    b, h, n, e = q.shape
    if c > window - 1:
        raise ValueError(f"attend_blocked: {c} cached keys exceed the window's {window - 1}")
    if valid is None:
        valid = torch.ones(b, c, dtype=torch.bool, device=q.device)
    blocks = -(-n // window)
    left, right = window - c, blocks * window - n
    pad = lambda t: F.pad(t, (0, 0, left, right))  # (b, h, W + n', e)
    key_ok = torch.cat([valid.new_zeros(b, left), valid, valid.new_ones(b, n + right)], dim=1)  # (b, W + n')
    unfold = lambda t: t.unfold(2, 2 * window, window).transpose(-1, -2)  # (b, h, blocks, 2W, e)
    i = torch.arange(window, device=q.device)[:, None]
    j = torch.arange(2 * window, device=q.device)[None, :]
    mask = (i < j) & (j <= i + window)  # (W, 2W): block-local form of  i - W < key <= i
    mask = mask & key_ok.unfold(1, 2 * window, window)[:, None, :, None, :]  # (b, 1, blocks, W, 2W)
    q_blocks = F.pad(q, (0, 0, 0, right)).unflatten(2, (blocks, window))  # (b, h, blocks, W, e)
    y = F.scaled_dot_product_attention(q_blocks, unfold(pad(k)), unfold(pad(v)), attn_mask=mask)
    return y.flatten(2, 3)[:, :, :n]  # (b, h, n, e)
