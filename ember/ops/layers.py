"""Building blocks of the backbones: scan mixer, SwiGLU, and the two residual layers.

Letters: b batch, n sequence, d model width, f feed-forward width.
Every layer maps (x (b, n, d), state) -> (x (b, n, d), state); state is carried explicitly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ember.errors import EmberConfigError
from ember.ops.attention import KVCache, WindowAttention
from ember.ops.attention.window import Backend
from ember.ops.memory_read import MemoryReadLayer
from ember.ops.scan import SCANS, ScanKind
from ember.state import ScanState, StateBase


class ScanMixer(nn.Module):
    """Input-dependent affine recurrence (SPEC 3.1), parallel over tokens.

        a_t = sigmoid(W_a x_t),  h_t = a_t * h_{t-1} + (1 - a_t) * (W_u x_t),
        y_t = W_o (h_t * silu(W_g x_t))

    The bias of W_a starts at logit(1 - 1/T) with time scales T log-spaced in [2, max_timescale],
    so channels begin with memories from a couple of tokens to hundreds.

    Args:
        d_model: width in and out.
        scan: "chunked" (chunked doubling scan), "parallel" (Hillis-Steele over the whole sequence)
            or "naive" (the step-by-step reference).
        max_timescale: longest initial memory time scale, in tokens.
    """

    def __init__(self, d_model: int, scan: ScanKind = "chunked", max_timescale: float = 512.0):
        super().__init__()
        if scan not in SCANS:
            raise EmberConfigError(f"scan={scan!r} is unknown: use one of {sorted(SCANS)}")
        self.scan = SCANS[scan]
        self.proj = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model, bias=False)
        with torch.no_grad():
            timescales = torch.exp(torch.linspace(math.log(2.0), math.log(max_timescale), d_model))
            a0 = 1.0 - 1.0 / timescales
            self.proj.bias.zero_()
            self.proj.bias[:d_model] = torch.log(a0 / (1.0 - a0))

    def forward(self, x: Tensor, state: ScanState | None = None) -> tuple[Tensor, ScanState]:
        """x: (b, n, d) -> y: (b, n, d), ScanState(h: (b, d)) after the last token."""
        za, u, g = self.proj(x).chunk(3, dim=-1)  # each (b, n, d)
        a = torch.sigmoid(za.float())
        b = (1.0 - a) * u.float()  # the scan runs in float32 (or float64) even under autocast
        h, h_last = self.scan(a, b, None if state is None else state.h.to(a.dtype))
        y = self.out((h.to(x.dtype)) * F.silu(g))
        return y, ScanState(h_last.to(x.dtype))


class SwiGLU(nn.Module):
    """Feed-forward W_2 (silu(W_1 x) * W_3 x) (Shazeer 2020). d_ff defaults to 8/3 d rounded to 8."""

    def __init__(self, d_model: int, d_ff: int | None = None):
        super().__init__()
        d_ff = d_ff or 8 * math.ceil(8 * d_model / 3 / 8)
        self.up = nn.Linear(d_model, 2 * d_ff, bias=False)
        self.down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, value = self.up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * value)


@dataclass
class NMLLayerState(StateBase):
    """Fast state of one Neural Memory Layer: scan state and working-memory cache."""

    scan: ScanState
    wm: KVCache
    pm: Optional[StateBase] = None


class NMLLayer(nn.Module):
    """One Neural Memory Layer (SPEC 3.1), pre-norm residuals:
    x += scan(norm x); x += WM(norm x); [x += PM(norm x)]; x += SwiGLU(norm x).

    Args:
        d_model, heads, window, attn_backend: as WindowAttention.
        d_ff: SwiGLU width (default 8/3 d).
        scan: "chunked", "parallel" or "naive" (see ScanMixer).
        dropout: on each residual branch.
        pm: a procedural memory `(x, state) -> (read-out, state)`, or None.
    """

    def __init__(self, d_model: int, heads: int, window: int, attn_backend: Backend = "sdpa",
                 d_ff: int | None = None, scan: ScanKind = "chunked", dropout: float = 0.0,
                 pm: nn.Module | None = None):
        super().__init__()
        self.norm_scan, self.norm_wm, self.norm_ffn = (nn.RMSNorm(d_model) for _ in range(3))
        self.scan = ScanMixer(d_model, scan=scan)
        self.wm = WindowAttention(d_model, heads, window=window, backend=attn_backend)
        self.pm = None if pm is None else MemoryReadLayer(d_model, pm)
        self.ffn = SwiGLU(d_model, d_ff)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, state: NMLLayerState | None = None) -> tuple[Tensor, NMLLayerState]:
        y, scan_state = self.scan(self.norm_scan(x), None if state is None else state.scan)
        x = x + self.drop(y)
        y, wm_state = self.wm(self.norm_wm(x), None if state is None else state.wm)
        x = x + self.drop(y)
        pm_state = None
        if self.pm is not None:
            x, pm_state = self.pm(x, None if state is None else state.pm)
        x = x + self.drop(self.ffn(self.norm_ffn(x)))
        return x, NMLLayerState(scan_state, wm_state, pm_state)

    def flush(self, state: NMLLayerState | None) -> NMLLayerState | None:
        """Session end: the procedural memory commits its open span."""
        if state is None or self.pm is None:
            return state
        return NMLLayerState(state.scan, state.wm, self.pm.flush(state.pm))


class AttentionLayer(nn.Module):
    """A pre-norm transformer layer: x += attn(norm x); x += SwiGLU(norm x). State: its KVCache.

    Args: as NMLLayer; window None is full causal attention.
    """

    def __init__(self, d_model: int, heads: int, window: int | None = None, attn_backend: Backend = "sdpa",
                 d_ff: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.norm_attn, self.norm_ffn = nn.RMSNorm(d_model), nn.RMSNorm(d_model)
        self.attn = WindowAttention(d_model, heads, window=window, backend=attn_backend)
        self.ffn = SwiGLU(d_model, d_ff)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, state: KVCache | None = None) -> tuple[Tensor, KVCache]:
        y, cache = self.attn(self.norm_attn(x), state)
        x = x + self.drop(y)
        x = x + self.drop(self.ffn(self.norm_ffn(x)))
        return x, cache
