"""Rotary position embeddings (Su et al. 2021), relative by construction.

Letters: b batch, h heads, n sequence, e head width (even).
"""

from __future__ import annotations

import torch
from torch import Tensor


def rope_cos_sin(positions: Tensor, dim: int, base: float = 10000.0, dtype=torch.float32):
    """Angles theta_{p,i} = p * base^(-2i/dim) for integer positions p (any sign).

    Returns cos, sin of shape (n, dim/2) in `dtype`.
    """
    inv_freq = base ** (-torch.arange(0, dim, 2, device=positions.device, dtype=torch.float64) / dim)
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]  # (n, e/2)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (x_{2i}, x_{2i+1}) of x (b, h, n, e) by the angles in cos/sin (n, e/2)."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (b, h, n, e/2, 2)
    return out.flatten(-2)
