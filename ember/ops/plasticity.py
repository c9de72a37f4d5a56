"""Procedural-memory math (SPEC 3.2): read, eligibility trace, neuromodulated commit.

Letters: b batch, n tokens, r slots, d width, k slots written per commit (top-k).

Every function is pure (tensors in, tensors out) and differentiable with respect to the
neuromodulator outputs g, eta, lam, tau, so a learned controller is trained by the main loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ember.ops.scan import scan_parallel


def pm_read(q: Tensor, K: Tensor, V: Tensor, s: Tensor) -> Tensor:
    """y_t = sum_i s_i softmax_i(q_t . K_i / sqrt(d)) V_i, O(r d) per token.

    Args:
        q: (b, n, d) queries; K, V: (b, r, d) slot keys and values; s: (b, r) strengths in [0, 1].

    Returns:
        (b, n, d) read-out (before the output projection).
    """
    att = torch.softmax(torch.einsum("bnd,brd->bnr", q, K) / math.sqrt(q.shape[-1]), dim=-1)  # (b, n, r)
    return torch.einsum("bnr,brd->bnd", att * s[:, None, :], V)


def eligibility(x: Tensor, e0: Tensor, rho: float) -> Tensor:
    """Decaying trace e_t = rho * e_{t-1} + (1 - rho) * x_t over a span; returns e after its last token.

    Args:
        x: (b, n, d) per-token activity; e0: (b, d) trace before the span; rho: decay in [0, 1).
    """
    a = torch.full_like(x, rho)
    _, last = scan_parallel(a, (1.0 - rho) * x, e0)
    return last


def slot_weights(K: Tensor, s: Tensor, k_e: Tensor, tau: Tensor, beta: float, top_k: int) -> Tensor:
    """w = softmax over the top-k slots of (cos(K_i, k_e) - beta * (1 - s_i)) / tau; 0 elsewhere.

    Args:
        K: (b, r, d); s: (b, r); k_e: (b, d) candidate key; tau: (b,) temperature > 0.

    Returns:
        (b, r) slot weights summing to 1 over the chosen slots.
    """
    score = (F.cosine_similarity(K, k_e[:, None, :], dim=-1, eps=1e-8) - beta * (1.0 - s)) / tau[:, None]
    keep = torch.zeros_like(score, dtype=torch.bool).scatter_(1, score.topk(top_k, dim=-1).indices, True)
    return torch.softmax(score.masked_fill(~keep, float("-inf")), dim=-1)


def pm_commit(K: Tensor, V: Tensor, s: Tensor, k_e: Tensor, v_e: Tensor, w: Tensor, g: Tensor, eta: Tensor,
              lam: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One commit at a plasticity boundary (SPEC 3.2):

        K <- normalize(K + g w (k_e - K))
        V <- V + g w (v_e - V)
        s <- clamp(lam s + g eta w, 0, 1)

    Args:
        K, V: (b, r, d); s: (b, r); k_e, v_e: (b, d) eligibility trace; w: (b, r) slot weights;
        g: (b,) commit gate in [0, 1]; eta: (b,) write strength; lam: (b,) decay in [0, 1].
    """
    gw = (g[:, None] * w)[..., None]  # (b, r, 1)
    K = F.normalize(K + gw * (k_e[:, None, :] - K), dim=-1, eps=1e-8)
    V = V + gw * (v_e[:, None, :] - V)
    s = (lam[:, None] * s + g[:, None] * eta[:, None] * w).clamp(0.0, 1.0)
    return K, V, s
