"""Input-dependent affine recurrence  h_t = a_t * h_{t-1} + b_t  (elementwise).

Letters: b batch, n sequence, d channels.

Two implementations with one contract, `fn(a, b, h0) -> (h, h_last)`:
- `scan_naive`: the equation, one step per token (the reference).
- `scan_parallel`: Hillis-Steele doubling over the associative operator
  (a1, b1) . (a2, b2) = (a1 * a2, a2 * b1 + b2); log2(n) vectorised steps that use only
  products of gates in (0, 1) and sums, so it is stable at any length (no division by a
  cumulative product, no log of b).
tests/ops/test_scan.py holds them together (outputs, final state, gradients, float64, n=63).
"""

from __future__ import annotations

import torch
from torch import Tensor


def scan_naive(a: Tensor, b: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Reference: h_t = a_t * h_{t-1} + b_t, one token at a time.

    Args:
        a: (b, n, d) gates, typically in (0, 1).
        b: (b, n, d) inputs.
        h0: (b, d) state before the first token; zeros when None.

    Returns:
        h: (b, n, d) every state; h_last: (b, d) the state after the last token.
    """
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0
    out = []
    for t in range(a.shape[1]):
        h = a[:, t] * h + b[:, t]
        out.append(h)
    return torch.stack(out, dim=1), h


def scan_parallel(a: Tensor, b: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Parallel scan with the same contract as `scan_naive`.

    After the doubling steps, A_t = prod_{s<=t} a_s and B_t = sum_{s<=t} (prod_{s<u<=t} a_u) b_s,
    so h_t = A_t * h0 + B_t.
    """
    n = a.shape[1]
    acc_a, acc_b = a, b
    shift = 1
    while shift < n:
        # combine position t with t - shift; positions < shift have nothing to their left
        prev_a = torch.nn.functional.pad(acc_a[:, :-shift], (0, 0, shift, 0), value=1.0)
        prev_b = torch.nn.functional.pad(acc_b[:, :-shift], (0, 0, shift, 0), value=0.0)
        acc_b = acc_a * prev_b + acc_b
        acc_a = acc_a * prev_a
        shift *= 2
    h = acc_b if h0 is None else acc_b + acc_a * h0.unsqueeze(1)
    return h, h[:, -1]


SCANS = {"naive": scan_naive, "parallel": scan_parallel}
