"""The flex tier: FlexAttention under a block mask, sparse in the window (cost grows with n * W).

Letters: b batch, h heads, n new tokens, c cached tokens, k = c + n keys, e head width.

The block mask is built eagerly (outside any compiled graph) and, when the cache is fully
valid, cached per shape in a dict the caller owns. FlexAttention has no backward on the CPU:
`WindowAttention` falls back to sdpa there while gradients are on.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention


def attend_flex(q: Tensor, k: Tensor, v: Tensor, c: int, window: int | None, valid: Tensor | None,
                masks: dict | None = None) -> Tensor:
    """Same contract as `reference.attend_dense`; `masks` caches block masks of fully valid caches.

    Args:
        q: (b, h, n, e) rotated queries; k, v: (b, h, c + n, e) rotated keys and values, cached first.
        c: cached keys; window: W, or None for the whole past; valid: (b, c) live cached keys, or None (all).
        masks: {(n, c, window, device): BlockMask}, filled as shapes are seen; None keeps none.

    Returns:
        (b, h, n, e).
    """
    if c == 0:  # nothing cached, nothing to mask
        valid = None
    mask = block_mask({} if masks is None else masks, q.shape[2], c, window, valid, q.device)
    return flex_attention(q, k, v, block_mask=mask)


@torch.compiler.disable
def block_mask(cache: dict, n: int, c: int, window: int | None, valid: Tensor | None, device) -> BlockMask:
    """Build (or reuse) a FlexAttention block mask eagerly, outside any compiled graph."""
    key = (n, c, window, str(device))
    if valid is None and key in cache:
        return cache[key]

    def mask_mod(b, h, q_idx, kv_idx):
        key_pos = kv_idx - c
        ok = key_pos <= q_idx
        if window is not None:
            ok = ok & (q_idx - key_pos < window)
        if valid is not None:
            ok = ok & ((kv_idx >= c) | valid[b, kv_idx.clamp(max=c - 1)])
        return ok

    batch = None if valid is None else valid.shape[0]
    mask = create_block_mask(mask_mod, batch, None, n, c + n, device=device)
    if valid is None:
        cache[key] = mask
    return mask
