"""Causal multi-head attention over a sliding window (or the whole past), with a KV cache.

Letters: b batch, h heads, n new tokens, c cached tokens, k = c + n keys, e head width.

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
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ember.errors import EmberConfigError
from ember.ops.rope import apply_rope, rope_cos_sin
from ember.state import StateBase

log = logging.getLogger(__name__)
BACKENDS = ("sdpa", "flex", "xformers")
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
    """The reference: SDPA under one boolean mask. q (b, h, n, e), k/v (b, h, c + n, e), valid (b, c) or None."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=window_mask(q.shape[2], c, window, valid, q.device))


def attend_blocked(q: Tensor, k: Tensor, v: Tensor, c: int, window: int, valid: Tensor) -> Tensor:
    """Sliding-window attention block by block, exactly `attend_dense` at O(n W) cost and memory.

    The keys are padded on the left to W + n' positions (n' = n rounded up to a multiple of W), so
    query i sits at key position W + i and sees keys i + 1 .. W + i: query block m (queries
    mW .. mW + W - 1) needs only key block [mW, mW + 2W). Left pads and invalid cache entries are
    masked; right pads are never visible to a real query (they lie in its future).

    Args:
        q: (b, h, n, e) rotated queries; k, v: (b, h, c + n, e), c <= W - 1 cached keys first.
        c: cached keys; window: W; valid: (b, c) which cached keys are live.
    """
    b, h, n, e = q.shape
    if c > window - 1:
        raise ValueError(f"attend_blocked: {c} cached keys exceed the window's {window - 1}")
    blocks = -(-n // window)
    left, right = window - c, blocks * window - n
    pad = lambda t: F.pad(t, (0, 0, left, right))  # noqa: E731  (b, h, W + n', e)
    key_ok = torch.cat([valid.new_zeros(b, left), valid, valid.new_ones(b, n + right)], dim=1)  # (b, W + n')
    unfold = lambda t: t.unfold(2, 2 * window, window).transpose(-1, -2)  # noqa: E731  (b, h, blocks, 2W, e)
    i = torch.arange(window, device=q.device)[:, None]
    j = torch.arange(2 * window, device=q.device)[None, :]
    mask = (i < j) & (j <= i + window)  # (W, 2W): block-local form of  i - W < key <= i
    mask = mask & key_ok.unfold(1, 2 * window, window)[:, None, :, None, :]  # (b, 1, blocks, W, 2W)
    q_blocks = F.pad(q, (0, 0, 0, right)).unflatten(2, (blocks, window))  # (b, h, blocks, W, e)
    y = F.scaled_dot_product_attention(q_blocks, unfold(pad(k)), unfold(pad(v)), attn_mask=mask)
    return y.flatten(2, 3)[:, :, :n]


class WindowAttention(nn.Module):
    """Causal multi-head self-attention with rotary positions over the last `window` tokens.

    Args:
        d_model: width of the residual stream.
        heads: number of heads; must divide d_model, head width must be even (rotary).
        window: keys visible to each query, itself included; None attends the whole past.
        backend: "sdpa" (reference), "flex" or "xformers".
        rope_base: rotary frequency base.
    """

    def __init__(self, d_model: int, heads: int, window: int | None = 256, backend: str = "sdpa",
                 rope_base: float = 10000.0):
        super().__init__()
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
            _require_xformers()
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
        k, v = F.pad(k, (0, 0, pad, 0)), F.pad(v, (0, 0, pad, 0))
        valid = F.pad(valid, (pad, 0), value=False)
        start = k.shape[2] - keep
        return KVCache(k[:, :, start:], v[:, :, start:], valid[:, start:])

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, c: int, valid: Tensor) -> Tensor:
        """q (b, h, n, e) rotated, k/v (b, h, c + n, e) -> (b, h, n, e)."""
        all_valid = c == 0 or bool(valid.all())
        if self.backend == "flex":
            if q.is_cuda or not torch.is_grad_enabled():
                return self._attend_flex(q, k, v, c, None if all_valid else valid)
            self._log_fallback("flex has no backward on the CPU")
        if self.backend == "xformers":
            if q.is_cuda and all_valid:
                return _attend_xformers(q, k, v, self.window)
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

    def _attend_flex(self, q: Tensor, k: Tensor, v: Tensor, c: int, valid: Tensor | None) -> Tensor:
        from torch.nn.attention.flex_attention import flex_attention

        block_mask = _block_mask(self._block_masks, q.shape[2], c, self.window, valid, q.device)
        return flex_attention(q, k, v, block_mask=block_mask)


@torch.compiler.disable
def _block_mask(cache: dict, n: int, c: int, window: int | None, valid: Tensor | None, device):
    """Build (or reuse) a FlexAttention block mask eagerly, outside any compiled graph."""
    from torch.nn.attention.flex_attention import create_block_mask

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
    block_mask = create_block_mask(mask_mod, batch, None, n, c + n, device=device)
    if valid is None:
        cache[key] = block_mask
    return block_mask


def _require_xformers():
    try:
        import xformers.ops  # noqa: F401
    except ImportError as err:
        raise EmberConfigError("attention backend 'xformers' needs the optional extra: "
                               "pip install 'ember[xformers]' (CUDA only), or use backend: sdpa / flex") from err


def _attend_xformers(q: Tensor, k: Tensor, v: Tensor, window: int | None) -> Tensor:
    from xformers.ops import fmha

    bias = (fmha.attn_bias.LowerTriangularFromBottomRightMask() if window is None
            else fmha.attn_bias.LocalAttentionFromBottomRightMask(window_left=window - 1, window_right=0))
    to_bnhe = lambda t: rearrange(t, "b h n e -> b n h e").contiguous()  # noqa: E731
    y = fmha.memory_efficient_attention(to_bnhe(q), to_bnhe(k), to_bnhe(v), attn_bias=bias)
    return rearrange(y, "b n h e -> b h n e")
