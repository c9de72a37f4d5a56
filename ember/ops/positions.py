"""Fixed sinusoidal position codes (Vaswani et al. 2017), shared by the audio encoder and the JEPA predictor.

    P[i, 2k] = sin(i / 10000^(2k/d)),  P[i, 2k+1] = cos(i / 10000^(2k/d))

Letters: s positions, d width.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sinusoid(positions: Tensor, d: int) -> Tensor:
    """positions: (s,) integer or float positions -> (s, d) float32 codes (d even or odd)."""
    half = (d + 1) // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device) * 2 / d)  # (half,)
    angle = positions.float()[:, None] * freq[None]  # (s, half)
    codes = torch.stack((angle.sin(), angle.cos()), dim=-1).flatten(1)  # (s, 2 half) interleaved sin, cos
    return codes[:, :d]
