"""Causal multi-head attention over a sliding window (or the whole past), with a KV cache.

Letters: b batch, h heads, n new tokens, c cached tokens, k = c + n keys, e head width, d width.

Keys are cached *unrotated*; rotary angles are applied per call with positions relative to
the first new token (cache at -c..-1, new tokens at 0..n-1). Attention only sees relative
offsets, so no absolute position counter is kept and long streams lose no precision.

Mask rule for query i (position i) and key j (position j - c):
    j - c <= i  and  i - (j - c) < window  and  (j >= c or cache_valid[j])

Backends, chosen by the `backend` init argument (never probed from the environment):
- "sdpa": torch scaled_dot_product_attention, any device. The reference is one dense boolean
  mask over all n x (c + n) pairs (`attend_dense`). Two exact fast paths take over where they
  apply: full attention with no cache uses SDPA's own causal kernel (`is_causal`, flash where
  the device has it), and a window much shorter than the chunk attends block by block
  (`attend_blocked`: each block of W queries against the 2W keys that can reach it), so cost
  and memory grow with n * W instead of n^2 (taken from n >= 4W and n >= 256: below that the
  block bookkeeping costs more than the masked work it saves, measured on the CPU). Tests hold
  both to the reference.
- "flex": FlexAttention with a block mask built eagerly (outside any compiled graph) and
  cached per shape; sparse in the window, so it scales with n * window. FlexAttention has no
  backward on the CPU, so CPU training falls back to sdpa (logged once); CPU inference uses flex.
- "xformers": memory_efficient_attention with a bottom-right local mask (CUDA, optional
  extra). A partially valid cache (after a per-stream reset) falls back to sdpa, logged once.

The tiers live beside this file under one contract, `attend(q, k, v, c, window, valid) -> y`
with q, y (b, h, n, e), k, v (b, h, c + n, e) rotated (cached keys first) and valid (b, c) or
None (all live): reference.py (`attend_dense`), blocked.py (`attend_blocked`), flex.py, xformers.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ember.errors import EmberConfigError
from ember.ops.attention.blocked import attend_blocked
from ember.ops.attention.flex import attend_flex
from ember.ops.attention.reference import attend_dense
from ember.ops.attention.xformers import attend_xformers, require_xformers
from ember.ops.rope import apply_rope, rope_cos_sin
from ember.state import StateBase

log = logging.getLogger(__name__)
Backend = Literal["sdpa", "flex", "xformers"]
BACKENDS: tuple[str, ...] = get_args(Backend)
BLOCKED_MIN_TOKENS = 256


@dataclass
class KVCache(StateBase):
    """Per-stream keys/values of the most recent tokens.

    k, v: (b, h, c, e) unrotated keys and values; valid: (b, c) bool, False for empty slots
    or slots erased by `reset`. With a window W the cache holds exactly W-1 entries (fixed
    size, constant bytes per stream); with no window it grows with the stream.
    """

    k: Tensor
    v: Tensor
    valid: Tensor

    def reset(self, mask: Tensor) -> KVCache:
        """Forget the cache of streams where mask (b,) is True."""
        return KVCache(self.k, self.v, self.valid & ~mask[:, None])


class WindowAttention(nn.Module):
    """Causal multi-head self-attention with rotary positions over the last `window` tokens.

    Args:
        d_model: width of the residual stream.
        heads: number of heads; must divide d_model, head width must be even (rotary).
        window: keys visible to each query, itself included; None attends the whole past.
        backend: "sdpa" (reference, any device), "flex" (FlexAttention) or "xformers" (CUDA extra).
        rope_base: rotary frequency base.
    """

    def __init__(self, d_model: int, heads: int, window: int | None = 256, backend: Backend = "sdpa",
                 rope_base: float = 10000.0):
        super().__init__()
        if d_model < 1 or heads < 1:
            raise EmberConfigError(f"d_model={d_model} and heads={heads} must be >= 1")
        if d_model % heads:
            raise EmberConfigError(f"d_model={d_model} is not divisible by heads={heads}: "
                                   f"pick heads from {[h for h in range(1, 17) if d_model % h == 0]}")
        if (d_model // heads) % 2:
            raise EmberConfigError(f"head width d_model/heads={d_model // heads} must be even for "
                                   "rotary positions: change heads or d_model")
        if window is not None and window < 1:
            raise EmberConfigError(f"window={window} must be >= 1 (or null for full attention)")
        if backend not in BACKENDS:
            raise EmberConfigError(f"attention backend {backend!r} is unknown: use one of {BACKENDS}")
        if backend == "xformers":
            require_xformers()
        self.heads, self.window, self.backend, self.rope_base = heads, window, backend, rope_base
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self._block_masks: dict = {}
        self._warned_fallback = False

    def forward(self, x: Tensor, cache: KVCache | None = None) -> tuple[Tensor, KVCache]:
        """Attend new tokens to themselves and the cache.

        Args:
            x: (b, n, d) new tokens (stateless input).
            cache: the stream's KVCache, or None for an empty one.

        Returns:
            y: (b, n, d); the updated KVCache (carries state).
        """
        b, n, _ = x.shape
        if cache is None:  # nothing in the past: skip the empty slots entirely
            empty = x.new_zeros(b, self.heads, 0, x.shape[-1] // self.heads)
            cache = KVCache(empty, empty, x.new_zeros(b, 0, dtype=torch.bool))
        q, k, v = rearrange(self.qkv(x), "b n (three h e) -> three b h n e", three=3, h=self.heads)
        c = cache.k.shape[2]
        k_all = torch.cat([cache.k, k], dim=2)  # (b, h, c + n, e), unrotated
        v_all = torch.cat([cache.v, v], dim=2)
        valid_all = torch.cat([cache.valid, cache.valid.new_ones(b, n)], dim=1)  # (b, c + n)
        cos, sin = rope_cos_sin(torch.arange(-c, n, device=x.device), q.shape[-1], self.rope_base, x.dtype)
        y = self._attend(apply_rope(q, cos[c:], sin[c:]), apply_rope(k_all, cos, sin), v_all, c, cache.valid)
        return self.out(rearrange(y, "b h n e -> b n (h e)")), self._next_cache(k_all, v_all, valid_all)

    def _next_cache(self, k: Tensor, v: Tensor, valid: Tensor) -> KVCache:
        """Keep the last W-1 keys (left-padded with invalid slots), or all of them without a window."""
        if self.window is None:
            return KVCache(k, v, valid)
        keep = self.window - 1
        pad = max(keep - k.shape[2], 0)
        k, v = F.pad(k, (0, 0, pad, 0)), F.pad(v, (0, 0, pad, 0))  # (b, h, max(c + n, W - 1), e)
        valid = F.pad(valid, (pad, 0), value=False)
        start = k.shape[2] - keep
        return KVCache(k[:, :, start:], v[:, :, start:], valid[:, start:])

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, c: int, valid: Tensor) -> Tensor:
        """q (b, h, n, e) rotated, k/v (b, h, c + n, e) -> (b, h, n, e)."""
        all_valid = c == 0 or bool(valid.all())
        if self.backend == "flex":
            if q.is_cuda or not torch.is_grad_enabled():
                return attend_flex(q, k, v, c, self.window, None if all_valid else valid, self._block_masks)
            self._log_fallback("flex has no backward on the CPU")
        if self.backend == "xformers":
            if q.is_cuda and all_valid:
                return attend_xformers(q, k, v, c, self.window, None)
            self._log_fallback("xformers needs CUDA tensors and a fully valid cache")
        if self.window is None and c == 0:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        if self.window is not None and q.shape[2] >= max(4 * self.window, BLOCKED_MIN_TOKENS):
            return attend_blocked(q, k, v, c, self.window, valid)
        return attend_dense(q, k, v, c, self.window, None if all_valid else valid)

    def _log_fallback(self, why: str):
        if not self._warned_fallback:
            log.info("attention backend %r: %s; using sdpa where that applies", self.backend, why)
            self._warned_fallback = True
