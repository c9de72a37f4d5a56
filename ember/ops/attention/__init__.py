"""Sliding-window causal attention with rotary positions and a KV cache, in tiers under one contract.

`attend(q, k, v, c, window, valid) -> y`, the mask rule in `window.py`:
- reference.py: `attend_dense`, SDPA under one boolean window mask (the reference).
- blocked.py: `attend_blocked`, the same block by block in pure PyTorch, O(n W).
- flex.py: `attend_flex`, FlexAttention under a cached block mask.
- xformers.py: `attend_xformers`, memory_efficient_attention (CUDA, optional extra).
- window.py: the `WindowAttention` module, its `KVCache` state and the backend table.
tests/ops/test_attention.py holds every tier to the reference (outputs, cache state, gradients).
"""

from ember.ops.attention.blocked import attend_blocked
from ember.ops.attention.reference import attend_dense
from ember.ops.attention.window import KVCache, WindowAttention

__all__ = ["KVCache", "WindowAttention", "attend_blocked", "attend_dense"]
