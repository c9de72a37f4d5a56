"""The reference tier: SDPA under one dense boolean window mask, readable and exact.

Letters: b batch, h heads, n new tokens, c cached tokens, k = c + n keys, e head width.

Mask rule for query i (position i) and key j (position j - c):
    j - c <= i  and  i - (j - c) < window  and  (j >= c or valid[j])
Every other tier (`blocked.py`, `flex.py`, `xformers.py`) is held to `attend_dense` by
tests/ops/test_attention.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def window_mask(n: int, c: int, window: int | None, valid: Tensor | None, device) -> Tensor:
    """Boolean mask (b or 1, 1, n, c + n), True where query i may attend key j (rule above)."""
    q = torch.arange(n, device=device)[:, None]
    key_pos = torch.arange(c + n, device=device)[None, :] - c
    allowed = key_pos <= q
    if window is not None:
        allowed = allowed & (q - key_pos < window)
    allowed = allowed[None, None]  # (1, 1, n, k)
    if valid is not None and c > 0:
        key_ok = torch.cat([valid, valid.new_ones(valid.shape[0], n)], dim=1)  # (b, k)
        allowed = allowed & key_ok[:, None, None, :]
    return allowed


def attend_dense(q: Tensor, k: Tensor, v: Tensor, c: int, window: int | None, valid: Tensor | None) -> Tensor:
    """The reference: SDPA under one boolean mask.

    Args:
        q: (b, h, n, e) rotated queries; k, v: (b, h, c + n, e) rotated keys and values, cached first.
        c: cached keys; window: W, or None for the whole past; valid: (b, c) live cached keys, or None (all).

    Returns:
        (b, h, n, e).
    """
    return F.scaled_dot_product_attention(q, k, v, attn_mask=window_mask(q.shape[2], c, window, valid, q.device))
