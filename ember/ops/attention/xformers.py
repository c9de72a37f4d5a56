"""The xformers tier: memory_efficient_attention with a bottom-right local mask (CUDA, optional extra).

Letters: b batch, h heads, n new tokens, c cached tokens, e head width.

The mask is aligned to the bottom-right corner, so the c cached keys need no offset; it cannot
hide erased cache keys, so `WindowAttention` falls back to sdpa for a partially valid cache.
"""

from __future__ import annotations

from einops import rearrange
from lightning_utilities.core.imports import RequirementCache
from torch import Tensor

from ember.errors import EmberConfigError

XFORMERS = RequirementCache("xformers>=0.0.28", "xformers.ops")  # pyproject's `xformers` extra


def require_xformers():
    """Raise an EmberConfigError naming the install when the optional extra is missing (or too old)."""
    if not XFORMERS:
        raise EmberConfigError(f"attention backend 'xformers' needs the optional extra ({XFORMERS.message}): "
                               "pip install 'ember[xformers]' (CUDA only), or use backend: sdpa / flex")


def attend_xformers(q: Tensor, k: Tensor, v: Tensor, c: int, window: int | None, valid: Tensor | None) -> Tensor:
    """Same contract as `reference.attend_dense`, on CUDA tensors and a fully valid cache only.

    Args:
        q: (b, h, n, e) rotated queries; k, v: (b, h, c + n, e) rotated keys and values, cached first.
        c: cached keys (implied by the bottom-right alignment); window: W, or None for the whole past.
        valid: must be None (every cached key live).

    Returns:
        (b, h, n, e).
    """
    from xformers.ops import fmha  # deferred: optional CUDA-only extra

    if valid is not None:
        raise ValueError("attend_xformers: the bottom-right mask cannot hide erased cache keys; pass valid=None")
    bias = (fmha.attn_bias.LowerTriangularFromBottomRightMask() if window is None
            else fmha.attn_bias.LocalAttentionFromBottomRightMask(window_left=window - 1, window_right=0))
    to_bnhe = lambda t: rearrange(t, "b h n e -> b n h e").contiguous()  # (b, n, h, e)
    y = fmha.memory_efficient_attention(to_bnhe(q), to_bnhe(k), to_bnhe(v), attn_bias=bias)
    return rearrange(y, "b n h e -> b h n e")
